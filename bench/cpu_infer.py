"""BERT-base encoder inference on CPU: ptmzoo's ``predict(texts, endpoint="embed")`` against transformers.

Both sides do the whole job a user asks for -- tokenize a list of texts, run the encoder, mean-pool
the last hidden states over the real tokens, return the vectors as Python lists -- with the *same
weights* (a randomly initialised BERT-base converted with ``to_hf_model``, SDPA attention) and the
*same tokenizer* (one WordPiece ``tokenizer.json``, read by ``AutoTokenizer`` on the transformers
side). The script checks that both give the same token ids and vectors.

Two batches of real sentences from WikiText-2 (cut at a token boundary to the length wanted; a
paragraph's start where no sentence is that long):

* ``fixed``: ``--batch`` texts of exactly ``--length`` tokens (no padding on either side);
* ``variable``: ``--batch`` texts of lengths spread evenly over 5..``--length``.

transformers runs the batch as users write it: ``tokenizer(texts, padding=True)``, one padded batch
of ``--batch`` rows. ptmzoo sorts the texts into batches of similar length
(``ptmzoo.tasks.base.length_batches``, what every predict path uses). A third row,
``transformers+buckets``, runs transformers on ptmzoo's length batches: it shows how much of the
gain is the batching and how much the model code. tokens/s counts real tokens only.

Implementations alternate in one process (the order flips every round); the figure is the median
over rounds. Memory: ``extra MiB`` is the peak resident memory during a call above the resident
memory just before it (Linux VmHWM, reset before each call; the models, loaded once, are not in it).
Other processes' share of the CPU is reported, since load on a shared machine slows every side.

    .venv/bin/python bench/cpu_infer.py                         # BERT-base, B64, lengths up to 128
    .venv/bin/python bench/cpu_infer.py --preset bert-small --rounds 3   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cpu_pretrain import CpuMonitor, RssMeter, cpu_model, load_average

DEFAULT_CORPUS = os.path.join(HERE, "..", "..", "shared", "data", "en", "corpus", "wikitext2.valid.txt")


# ---- the texts -----------------------------------------------------------------------------------
def sentences_and_paragraphs(corpus: str) -> tuple[list[str], list[str]]:
    """The corpus's sentences (text lines split after . ! ?) and its paragraphs (lines), headings left out."""
    sentences, paragraphs = [], []
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("="):
                paragraphs.append(line)
                sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", line) if s.strip()]
    return sentences, paragraphs


def cut_to(tokenizer, text: str, pieces, length: int) -> str | None:
    """``text`` (``pieces``: its encoding without special tokens) cut at a token boundary so that
    it encodes to exactly ``length`` tokens with the template's special tokens; None when it cannot."""
    words = length - len(tokenizer.encode_batch([""])[0])
    if len(pieces.ids) < words or words < 1:
        return None
    cut = text[: pieces.offsets[words - 1][1]]
    return cut if len(tokenizer.encode_batch([cut])[0]) == length else None


def batch_of_lengths(tokenizer, pools: tuple[list[str], ...], lengths: list[int],
                     rng: np.random.Generator) -> list[str]:
    """One real text per wanted length: a random unused sentence long enough, cut to it (a
    paragraph's start when no sentence is long enough)."""
    candidates = []  # (text, its pieces), sentences first, each pool in a random order
    for pool in pools:
        order = rng.permutation(len(pool))
        texts = [pool[i] for i in order]
        candidates += list(zip(texts, tokenizer.backend.encode_batch(texts, add_special_tokens=False)))
    used, out = set(), []
    for length in lengths:
        for number, (text, pieces) in enumerate(candidates):
            cut = None if number in used else cut_to(tokenizer, text, pieces, length)
            if cut is not None:
                used.add(number)
                out.append(cut)
                break
        else:
            sys.exit(f"no text of the corpus has {length} tokens; use a larger --corpus or a smaller --length")
    return out


# ---- the two implementations -----------------------------------------------------------------------
def build(preset_name: str, vocab: int, corpus: str, workdir: str, seed: int):
    from ptmzoo.catalog import build_model
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.data.corpus import iter_documents
    from ptmzoo.data.tokenizers import train_tokenizer
    from ptmzoo.interop.hf import to_hf_model
    from ptmzoo.presets import get_preset

    tokenizer = train_tokenizer(iter_documents([corpus]), "wordpiece", vocab)
    preset = get_preset(preset_name)
    torch.manual_seed(seed)
    model = build_model(preset.family, {**preset.model, "vocab_size": vocab}).eval()
    path = os.path.join(workdir, "encoder")
    save_pretrained(path, model, tokenizer)
    return path, tokenizer, to_hf_model(model, attn_implementation="sdpa").eval()


def ptmzoo_embed(loaded, texts: list[str]) -> list[list[float]]:
    return [r["embedding"] for r in loaded.predict(texts, endpoint="embed")["results"]]


@torch.inference_mode()
def transformers_embed(hf, hf_tokenizer, texts: list[str], batches: list[list[int]]) -> list[list[float]]:
    """Mean-pooled last hidden states, each batch of ``batches`` (indices of ``texts``) one padded batch."""
    out: list = [None] * len(texts)
    for batch in batches:
        encoded = hf_tokenizer([texts[i] for i in batch], padding=True, return_tensors="pt")
        hidden = hf(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        vectors = ((hidden * mask).sum(1) / mask.sum(1)).tolist()
        for index, vector in zip(batch, vectors):
            out[index] = vector
    return out


def bench_case(label: str, texts: list[str], runners: dict, tokens: int, rounds: int, meter: RssMeter) -> dict:
    outputs = {name: run(texts) for name, run in runners.items()}  # warm-up, and the vectors to compare
    reference = np.asarray(outputs["transformers"])
    times: dict[str, list[float]] = {name: [] for name in runners}
    extra: dict[str, list[float]] = {name: [] for name in runners}
    others = []
    monitor = CpuMonitor()
    for round_ in range(rounds):
        order = list(runners) if round_ % 2 == 0 else list(reversed(runners))
        for name in order:
            base = meter.start()
            monitor.start()
            start = time.perf_counter()
            runners[name](texts)
            times[name].append(time.perf_counter() - start)
            others.append(monitor.others())
            peak = meter.peak()
            if base is not None and peak is not None:
                extra[name].append(peak - base)
    result = {"case": label, "texts": len(texts), "tokens": tokens,
              "others_cpu_max": max((o for o in others if o is not None), default=None)}
    for name in runners:
        seconds = statistics.median(times[name])
        result[name] = {"tokens_per_s": tokens / seconds, "seconds": times[name],
                        "extra_rss_mib": max(extra[name]) if extra[name] else None,
                        "max_abs_diff": float(np.abs(np.asarray(outputs[name]) - reference).max())}
    for name in runners:
        result[name]["ratio"] = result[name]["tokens_per_s"] / result["transformers"]["tokens_per_s"]
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="bert-base")
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--batch", type=int, default=64, help="texts per batch (both cases)")
    ap.add_argument("--length", type=int, default=128, help="tokens of the fixed batch; the longest of the variable")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "cpu_infer.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoTokenizer

    import ptmzoo
    from ptmzoo.tasks.base import length_batches

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as workdir:
        path, tokenizer, hf = build(args.preset, args.vocab_size, args.corpus, workdir, args.seed)
        loaded = ptmzoo.load(path)
        loaded.predictor().batch_size = args.batch
        hf_tokenizer = AutoTokenizer.from_pretrained(path)
        pools = sentences_and_paragraphs(args.corpus)
        cases = {"fixed": [args.length] * args.batch,
                 "variable": [round(n) for n in np.linspace(5, args.length, args.batch).tolist()]}
        meter, results = RssMeter(), []
        for label, lengths in cases.items():
            texts = batch_of_lengths(tokenizer, pools, list(rng.permutation(lengths)), rng)
            ids = tokenizer.encode_batch(texts)
            if hf_tokenizer(texts)["input_ids"] != ids:
                sys.exit("the two tokenizers disagree on these texts")
            one_batch = [list(range(len(texts)))]
            buckets = length_batches(list(map(len, ids)), args.batch)
            runners = {"ptmzoo": lambda t: ptmzoo_embed(loaded, t),
                       "transformers": lambda t, b=one_batch: transformers_embed(hf, hf_tokenizer, t, b),
                       "transformers+buckets": lambda t, b=buckets: transformers_embed(hf, hf_tokenizer, t, b)}
            results.append(bench_case(label, texts, runners, sum(map(len, ids)), args.rounds, meter))
            results[-1]["length_batches"] = [len(b) for b in buckets]
    print(f"{args.preset}, batch {args.batch}, lengths up to {args.length}, mean-pooled embeddings, "
          f"{args.threads} threads, median of {args.rounds} rounds, load average {load_average()}")
    print(f"{'case':<9} {'implementation':<21} {'tokens/s':>9} {'ratio':>6} {'extra MiB':>10} {'max |diff|':>11} "
          f"{'others CPU':>11}")
    for r in results:
        others = f"{r['others_cpu_max']:.0%}" if r["others_cpu_max"] is not None else "n/a"
        for name in ("ptmzoo", "transformers", "transformers+buckets"):
            s = r[name]
            memory = "-" if s["extra_rss_mib"] is None else f"{s['extra_rss_mib']:.0f}"
            print(f"{r['case']:<9} {name:<21} {s['tokens_per_s']:>9.1f} {s['ratio']:>6.2f} {memory:>10} "
                  f"{s['max_abs_diff']:>11.1e} {others:>11}")
        print(f"{'':<9} ({r['tokens']} real tokens; ptmzoo's length batches: {r['length_batches']})")
    env = {"cpu": cpu_model(), "load_average": load_average(), "torch": torch.__version__,
           "transformers": transformers.__version__}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"env": env, "args": vars(args), "results": results}, f, indent=2)
    same = all(r[name]["max_abs_diff"] < 1e-4 for r in results for name in ("ptmzoo", "transformers+buckets"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
