"""Perplexity by position in the segment: what a memory buys (Transformer-XL, Dai et al., 2019).

Reads a long text (default: WikiText-2 test) in consecutive segments of ``--segment`` tokens with
each checkpoint and reports, for every position 0 .. segment-1 of a segment, the perplexity of the
tokens predicted there. A model without a memory -- a GPT-style decoder reading non-overlapping
windows, or Transformer-XL with ``mem_len`` 0 -- predicts the first tokens of a segment from almost
nothing (context fragmentation); with a memory each position also sees the previous segments.

    python bench/xl_positions.py --text ../shared/data/en/corpus/wikitext2.test.txt \
        --model xl_mem=runs/xl_mem/final:64 --model xl_mem_256=runs/xl_mem/final:256 \
        --model xl_nomem=runs/xl_nomem/final:0 --model gpt=runs/gpt/final --out bench/results/xl

``NAME=CHECKPOINT[:MEM_LEN]``: a model with a memory is read with that memory (default: its own);
a decoder without one in windows of ``--segment`` tokens that start ``--segment`` apart. Writes
``positions.json`` (overall and per-position NLL) and ``positions.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch

import ptmzoo
from ptmzoo.evaluation.perplexity import perplexity_with_memory
from ptmzoo.generation.decoding import lm_head
from ptmzoo.models.base import BackboneOutput


@torch.no_grad()
def windows_by_position(model, ids: list[int], segment: int, batch_size: int = 32) -> dict:
    """A decoder without memory on non-overlapping windows of ``segment + 1`` tokens that start
    ``segment`` apart: the same predictions as a segment-by-segment reading without memory."""
    head = lm_head(model)
    starts = list(range(0, len(ids) - 1, segment))
    sums, counts = torch.zeros(segment, dtype=torch.float64), torch.zeros(segment, dtype=torch.float64)
    for i in range(0, len(starts), batch_size):
        rows = [ids[s : s + segment + 1] for s in starts[i : i + batch_size]]
        width = max(map(len, rows))
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(tokens)
        for r, row in enumerate(rows):
            tokens[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
        hidden = model.backbone(tokens[:, :-1], mask[:, :-1]).last_hidden_state
        log_probs = torch.log_softmax(head.logits(BackboneOutput(hidden), {}).float(), -1)
        nll = -log_probs.gather(-1, tokens[:, 1:, None])[..., 0].double()
        valid = mask[:, 1:].bool()
        sums += (nll * valid).sum(0)[:segment]
        counts += valid.sum(0)[:segment].double()
    per_position = (sums / counts.clamp(min=1)).tolist()
    mean = float(sums.sum() / counts.sum())
    return {"nll": mean, "perplexity": math.exp(mean), "scored_tokens": int(counts.sum()), "position_nll": per_position}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=os.path.join("..", "shared", "data", "en", "corpus", "wikitext2.test.txt"))
    parser.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT[:MEM_LEN]")
    parser.add_argument("--segment", type=int, default=64)
    parser.add_argument("--out", default=os.path.join("bench", "results", "xl"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with open(args.text, encoding="utf-8") as fh:
        text = fh.read()
    results = {}
    for spec in args.model:
        name, _, where = spec.partition("=")
        path, _, mem = where.partition(":")
        pretrained = ptmzoo.load(path)
        ids = pretrained.tokenizer.encode(text, add_special_tokens=False)
        if "mems" in pretrained.model.input_names:
            result = perplexity_with_memory(pretrained.model, ids, args.segment, int(mem) if mem else None,
                                            by_position=True)
        else:
            result = windows_by_position(pretrained.model, ids, args.segment)
        result["parameters"] = sum(p.numel() for p in pretrained.model.parameters())
        results[name] = result
        print(f"{name}: perplexity {result['perplexity']:.2f} over {result['scored_tokens']:,} tokens "
              f"({result['parameters']:,} parameters); positions 0-3: "
              + ", ".join(f"{math.exp(v):.0f}" for v in result["position_nll"][:4])
              + "; last 4: " + ", ".join(f"{math.exp(v):.0f}" for v in result["position_nll"][-4:]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "positions.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, result in results.items():
        ax.plot(range(args.segment), [math.exp(v) for v in result["position_nll"]],
                label=f"{name} (ppl {result['perplexity']:.1f})")
    ax.set_xlabel(f"position of the predicted token in its segment of {args.segment}")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.set_title(os.path.basename(args.text))
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "positions.png"), dpi=120)
    print(f"-> {os.path.join(args.out, 'positions.json')}, positions.png")


if __name__ == "__main__":
    main()
