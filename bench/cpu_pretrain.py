"""Pre-training throughput on CPU: ptmzoo against Hugging Face ``transformers``, side by side.

For each preset (default: bert-tiny with MLM + NSP, gpt2-tiny with causal LM) the script builds
the ptmzoo model and the equivalent ``transformers`` model (BertForPreTraining /
GPT2LMHeadModel, SDPA attention) from the same configuration, copies the ptmzoo weights into the
transformers model (and checks, with dropout off, that both give the same loss on the same
batch), then times full optimizer steps on *identical* batches:

    forward (loss) + backward + clip_grad_norm_(1.0) + fused AdamW step + zero_grad

Batches come from ptmzoo's real data pipeline on real text: a tokenizer trained by ptmzoo, the
corpus tokenized into shards by ``prepare_corpus``, BERT sentence pairs with MLM masking and NSP
labels (``PretrainCollator``), GPT-2 packed full-length blocks. They are collated before timing,
so the timings cover the model step only. Implementations run alternately in one process (the
order flips every round); the reported figure is the median over rounds. Tokens are non-padding
input tokens. Everything is fp32 on CPU with dropout as configured (training mode).

    .venv/bin/python bench/cpu_pretrain.py            # both presets, ~2 minutes on 2 idle cores
    .venv/bin/python bench/cpu_pretrain.py --help
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# The shared data folder sits beside the project root (see its README).
DEFAULT_CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "en", "corpus",
                                               "wikitext2.valid.txt"))


# ---- environment ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


class CpuMonitor:
    """Share of the machine's CPU time that *other* processes used over a stretch of code.

    Linux only (/proc/stat); None elsewhere. Other load slows both implementations down and,
    with all cores in use by torch's thread pool, hurts many-small-op workloads the most.
    """

    def __init__(self):
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = None

    @staticmethod
    def _machine() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                values = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system

    def start(self) -> None:
        self._start = (self._machine(), self._own())

    def others(self) -> float | None:
        machine, own = self._machine(), self._own()
        if machine is None or self._start is None or self._start[0] is None:
            return None
        busy = (machine[0] - self._start[0][0]) / self._tick
        total = (machine[1] - self._start[0][1]) / self._tick
        if total <= 0:
            return None
        return min(1.0, max(0.0, (busy - (own - self._start[1])) / total))


class RssMeter:
    """Peak resident memory over a stretch of code (Linux: VmHWM, reset through clear_refs).

    Before each stretch, free heap memory is returned to the OS (malloc_trim) and the peak is
    reset, so that one implementation's cached allocations do not count for the other. The peak
    still includes everything both have in common (Python, torch, both models, the batches).
    """

    def __init__(self):
        self.resettable = False
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self._libc = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.resettable = self._status("VmHWM") is not None
        except OSError:
            pass

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024  # kB -> MiB
        except OSError:
            pass
        return None

    def start(self) -> float | None:
        gc.collect()
        if self._libc is not None:
            try:
                self._libc.malloc_trim(0)
            except AttributeError:
                pass
        if self.resettable:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        return self._status("VmRSS")

    def peak(self) -> float | None:
        if self.resettable:
            return self._status("VmHWM")
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # whole process, never reset


# ---- data ----------------------------------------------------------------------------------------


def build_batches(preset, args, workdir: str, count: int, batch_size: int):
    """``count`` batches from ptmzoo's pipeline: tokenizer -> shards -> dataset -> collator."""
    from ptmzoo.data.corpus import iter_documents
    from ptmzoo.data.prepare import prepare_corpus
    from ptmzoo.data.shards import ShardedCorpus
    from ptmzoo.data.tokenizers import train_tokenizer
    from ptmzoo.objectives import PretrainCollator, build_objectives
    from ptmzoo.train.pretrain import build_pretrain_dataset

    family = preset.family
    vocab = args.bert_vocab if family == "bert" else args.gpt2_vocab
    kind = "wordpiece" if family == "bert" else "bpe"
    tokenizer = train_tokenizer(iter_documents([args.corpus]), kind, vocab)
    if tokenizer.vocab_size > vocab:
        sys.exit(f"tokenizer vocabulary ({tokenizer.vocab_size}) exceeds the model's ({vocab})")
    tok_dir = os.path.join(workdir, f"{preset.name}-tokenizer")
    shard_dir = os.path.join(workdir, f"{preset.name}-shards")
    tokenizer.save(tok_dir)
    prepare_corpus([args.corpus], tok_dir, shard_dir, workers=1, valid_fraction=0.0, progress=False)
    split = ShardedCorpus(shard_dir).split("train")
    objectives = build_objectives(dict(preset.objectives), tokenizer, args.seed)
    dataset = build_pretrain_dataset(split, objectives, tokenizer, args.seq_len, causal=family == "gpt2",
                                     seed=args.seed)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.document_separator_id
    collate = PretrainCollator(objectives, pad_id)
    batches = []
    for b in range(count):
        keys = [b * batch_size + i for i in range(batch_size)]
        batches.append(collate([dataset[(k % len(dataset), k // len(dataset))] for k in keys]))
    info = {"tokenizer_kind": kind, "tokenizer_vocab": tokenizer.vocab_size, "dataset_sequences": len(dataset),
            "corpus": os.path.abspath(args.corpus), "corpus_tokens": split.num_tokens}
    return batches, tokenizer, objectives, info


# ---- models --------------------------------------------------------------------------------------


def build_ptmzoo(preset, vocab: int, pad_id: int | None, objectives):
    from ptmzoo.models import backbone_class
    from ptmzoo.models.model import PtmModel

    cls = backbone_class(preset.family)
    overrides = {**preset.model, "vocab_size": vocab}
    if preset.family == "bert" and pad_id is not None:
        overrides["pad_token_id"] = pad_id
    backbone = cls(cls.config_class.from_dict(overrides))
    model = PtmModel(preset.family, backbone)
    for objective in objectives:
        objective.check_backbone(backbone, preset.name)
        model.add_head(objective.name, objective.head_kind, **objective.head_options())
    return model


def build_hf(family: str, cfg, gpt2_act: str):
    """The transformers model with the same architecture as ptmzoo's config ``cfg``."""
    import transformers

    if family == "bert":
        if cfg.hidden_act != "gelu":
            raise ValueError(f"no transformers mapping for BERT activation {cfg.hidden_act!r}")
        hf_cfg = transformers.BertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, hidden_act="gelu",
            hidden_dropout_prob=cfg.hidden_dropout, attention_probs_dropout_prob=cfg.attention_dropout,
            max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
            layer_norm_eps=cfg.layer_norm_eps, initializer_range=cfg.initializer_range,
            pad_token_id=cfg.pad_token_id, tie_word_embeddings=True,
        )
        return transformers.BertForPreTraining._from_config(hf_cfg, attn_implementation="sdpa")
    if cfg.hidden_act not in ("gelu_tanh", "gelu_new"):
        raise ValueError(f"no transformers mapping for GPT-2 activation {cfg.hidden_act!r}")
    hf_cfg = transformers.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_position_embeddings, n_embd=cfg.hidden_size,
        n_layer=cfg.num_layers, n_head=cfg.num_heads, n_inner=cfg.intermediate_size,
        activation_function=gpt2_act, resid_pdrop=cfg.hidden_dropout, embd_pdrop=cfg.hidden_dropout,
        attn_pdrop=cfg.attention_dropout, layer_norm_epsilon=cfg.layer_norm_eps,
        initializer_range=cfg.initializer_range, tie_word_embeddings=cfg.tie_word_embeddings,
        use_cache=False,  # training: no key/value cache (ptmzoo has none either)
    )
    return transformers.GPT2LMHeadModel._from_config(hf_cfg, attn_implementation="sdpa")


def _weight_map(family: str, num_layers: int):
    """(ptmzoo key, transformers key, transform) for every parameter; transform(t) -> tensor."""
    def same(t):
        return t

    def transpose(t):  # GPT-2's Conv1D stores [in, out]
        return t.t()

    def qkv_part(i):
        return lambda t: t.chunk(3, dim=0)[i]  # ptmzoo's fused qkv rows are [q; k; v]

    rows = []
    if family == "bert":
        for a, b in [("embeddings.word", "embeddings.word_embeddings"),
                     ("embeddings.position", "embeddings.position_embeddings"),
                     ("embeddings.token_type", "embeddings.token_type_embeddings")]:
            rows.append((f"backbone.{a}.weight", f"bert.{b}.weight", same))
        linears = [("embeddings.norm", "bert.embeddings.LayerNorm"), ("pooler.dense", "bert.pooler.dense")]
        for i in range(num_layers):
            p, h = f"layers.{i}", f"bert.encoder.layer.{i}"
            for j, name in enumerate(("query", "key", "value")):
                for kind in ("weight", "bias"):
                    rows.append((f"backbone.{p}.attention.qkv.{kind}", f"{h}.attention.self.{name}.{kind}",
                                 qkv_part(j)))
            linears += [(f"{p}.attention.out", f"{h}.attention.output.dense"),
                        (f"{p}.attention_norm", f"{h}.attention.output.LayerNorm"),
                        (f"{p}.ffn.up", f"{h}.intermediate.dense"),
                        (f"{p}.ffn.down", f"{h}.output.dense"),
                        (f"{p}.ffn_norm", f"{h}.output.LayerNorm")]
        for a, b in linears:
            for kind in ("weight", "bias"):
                rows.append((f"backbone.{a}.{kind}", f"{b}.{kind}", same))
        for a, b in [("heads.mlm.dense", "cls.predictions.transform.dense"),
                     ("heads.mlm.norm", "cls.predictions.transform.LayerNorm"),
                     ("heads.nsp.classifier", "cls.seq_relationship")]:
            for kind in ("weight", "bias"):
                rows.append((f"{a}.{kind}", f"{b}.{kind}", same))
        rows.append(("heads.mlm.decoder.bias", "cls.predictions.bias", same))
        return rows
    rows += [("backbone.token.weight", "transformer.wte.weight", same),
             ("backbone.position.weight", "transformer.wpe.weight", same)]
    for kind in ("weight", "bias"):
        rows.append((f"backbone.final_norm.{kind}", f"transformer.ln_f.{kind}", same))
    for i in range(num_layers):
        p, h = f"backbone.blocks.{i}", f"transformer.h.{i}"
        for a, b, conv in [("attention_norm", "ln_1", False), ("ffn_norm", "ln_2", False),
                           ("attention.qkv", "attn.c_attn", True), ("attention.out", "attn.c_proj", True),
                           ("ffn.up", "mlp.c_fc", True), ("ffn.down", "mlp.c_proj", True)]:
            rows.append((f"{p}.{a}.weight", f"{h}.{b}.weight", transpose if conv else same))
            rows.append((f"{p}.{a}.bias", f"{h}.{b}.bias", same))
    return rows


@torch.no_grad()
def copy_weights(family: str, ptm, hf) -> None:
    """Give the transformers model ptmzoo's initial weights (tied weights stay tied)."""
    src = ptm.state_dict()
    dst = hf.state_dict()
    for a, b, fn in _weight_map(family, ptm.config.num_layers):
        value = fn(src[a])
        if dst[b].shape != value.shape:
            raise ValueError(f"shape mismatch {a} {tuple(value.shape)} -> {b} {tuple(dst[b].shape)}")
        dst[b].copy_(value)


# ---- steps ---------------------------------------------------------------------------------------


def ptmzoo_loss(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 token_type_ids=batch["token_type_ids"], targets=batch).loss


def hf_loss(family: str):
    if family == "bert":
        def loss(model, batch):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"], labels=batch["mlm_labels"],
                         next_sentence_label=batch["nsp_labels"]).loss
    else:
        def loss(model, batch):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["lm_labels"]).loss
    return loss


class Runner:
    """One implementation: a model, its AdamW and its loss function; ``run`` does timed steps."""

    def __init__(self, name: str, model, loss_fn, lr: float):
        self.name = name
        self.model = model.train()
        self.loss_fn = loss_fn
        self.params = [p for p in model.parameters() if p.requires_grad]
        # The same optimizer on both sides: fused AdamW (what ptmzoo's Trainer uses, and the
        # default of recent transformers Trainers).
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, fused=True)
        self.losses: list[float] = []
        self.rounds: list[dict] = []

    def step(self, batch) -> float:
        loss = self.loss_fn(self.model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def run(self, batches, meter: RssMeter | None = None, record: bool = True) -> None:
        base = meter.start() if meter else None
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        cpu = CpuMonitor()
        cpu.start()
        start = time.perf_counter()
        for batch in batches:
            self.losses.append(self.step(batch))
        seconds = time.perf_counter() - start
        if record:
            peak = meter.peak() if meter else None
            self.rounds.append({"steps": len(batches), "tokens": tokens, "seconds": seconds,
                                "tokens_per_s": tokens / seconds, "ms_per_step": 1000 * seconds / len(batches),
                                "rss_start_mib": base, "rss_peak_mib": peak, "others_cpu": cpu.others()})

    def summary(self) -> dict:
        tps = [r["tokens_per_s"] for r in self.rounds]
        ms = [r["ms_per_step"] for r in self.rounds]
        peaks = [r["rss_peak_mib"] for r in self.rounds if r["rss_peak_mib"] is not None]
        others = [r["others_cpu"] for r in self.rounds if r["others_cpu"] is not None]
        deltas = [r["rss_peak_mib"] - r["rss_start_mib"] for r in self.rounds
                  if r["rss_peak_mib"] is not None and r["rss_start_mib"] is not None]
        return {
            "tokens_per_s": statistics.median(tps), "tokens_per_s_min": min(tps), "tokens_per_s_max": max(tps),
            "ms_per_step": statistics.median(ms),
            "rss_peak_mib": max(peaks) if peaks else None,
            "rss_step_mib": max(deltas) if deltas else None,
            "others_cpu_max": max(others) if others else None,
            "parameters": sum(p.numel() for p in self.params),
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
            "rounds": self.rounds,
        }


@torch.no_grad()
def check_same_loss(family, ptm, hf, batch) -> tuple[float, float]:
    ptm.eval(), hf.eval()
    a = float(ptmzoo_loss(ptm, batch))
    b = float(hf_loss(family)(hf, batch))
    ptm.train(), hf.train()
    return a, b


def profile(runner: Runner, batches, top: int) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            runner.step(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


# ---- main ----------------------------------------------------------------------------------------


def bench_preset(name: str, args, workdir: str, meter: RssMeter) -> dict:
    import ptmzoo.objectives  # noqa: F401  (registers the heads)
    from ptmzoo.presets import get_preset

    preset = get_preset(name)
    if preset.family not in ("bert", "gpt2"):
        sys.exit(f"{name}: only BERT and GPT-2 presets have a transformers counterpart here")
    batch_size = args.bert_batch if preset.family == "bert" else args.gpt2_batch
    vocab = args.bert_vocab if preset.family == "bert" else args.gpt2_vocab
    n_batches = max(args.warmup + args.rounds * args.steps, args.profile)
    t0 = time.perf_counter()
    batches, tokenizer, objectives, data_info = build_batches(preset, args, workdir, n_batches, batch_size)
    data_seconds = time.perf_counter() - t0

    torch.manual_seed(args.seed)
    ptm = build_ptmzoo(preset, vocab, tokenizer.pad_id, objectives)
    hf = build_hf(preset.family, ptm.config, args.gpt2_act)
    copy_weights(preset.family, ptm, hf)
    check = check_same_loss(preset.family, ptm, hf, batches[0])
    if abs(check[0] - check[1]) > 1e-3 * max(1.0, abs(check[0])):
        print(f"WARNING {name}: eval losses differ with identical weights: ptmzoo {check[0]:.6f} "
              f"transformers {check[1]:.6f}", file=sys.stderr)

    runners = [Runner("ptmzoo", ptm, ptmzoo_loss, args.lr), Runner("transformers", hf, hf_loss(preset.family), args.lr)]
    counts = [sum(p.numel() for p in r.params) for r in runners]
    if counts[0] != counts[1]:
        print(f"WARNING {name}: parameter counts differ: ptmzoo {counts[0]:,}, transformers {counts[1]:,}",
              file=sys.stderr)
    tokens_per_batch = [int(b["attention_mask"].sum()) for b in batches]
    print(f"{name}: batch {batch_size} x {args.seq_len}, {statistics.mean(tokens_per_batch):.0f} non-padding "
          f"tokens/batch on average, vocab {vocab} (tokenizer {data_info['tokenizer_vocab']}); "
          f"eval loss with identical weights: ptmzoo {check[0]:.4f}, transformers {check[1]:.4f}", flush=True)

    warm = batches[: args.warmup]
    for r in runners:  # warm-up: allocator, thread pools, optimizer state
        r.run(warm, record=False)
    for i in range(args.rounds):
        chunk = batches[args.warmup + i * args.steps : args.warmup + (i + 1) * args.steps]
        for r in (runners if i % 2 == 0 else runners[::-1]):
            r.run(chunk, meter)
        others = [r.rounds[-1]["others_cpu"] for r in runners]
        busy = ("" if None in others else
                f"  (other processes: {100 * others[0]:.0f}% / {100 * others[1]:.0f}% of the CPUs)")
        print(f"  round {i + 1}/{args.rounds}: " + ", ".join(
            f"{r.name} {r.rounds[-1]['tokens_per_s']:,.0f} tok/s" for r in runners) + busy, flush=True)

    profiles = {}
    if args.profile:
        for r in runners:
            profiles[r.name] = profile(r, batches[: args.profile], args.profile_top)
            print(f"\n--- torch.profiler, {name}, {r.name}, {args.profile} steps ---\n{profiles[r.name]}")

    result = {
        "preset": name, "family": preset.family, "batch_size": batch_size, "seq_len": args.seq_len,
        "objectives": list(preset.objectives), "ptmzoo_config": asdict(ptm.config),
        "transformers_config": hf.config.to_diff_dict(), "data": data_info,
        "data_seconds": data_seconds, "mean_tokens_per_batch": statistics.mean(tokens_per_batch),
        "eval_loss_identical_weights": {"ptmzoo": check[0], "transformers": check[1]},
        "results": {r.name: r.summary() for r in runners},
    }
    result["ratio_ptmzoo_over_transformers"] = (result["results"]["ptmzoo"]["tokens_per_s"]
                                                / result["results"]["transformers"]["tokens_per_s"])
    return result


def fmt_table(results: list[dict]) -> str:
    header = ["model", "implementation", "tokens/s", "(min-max)", "ms/step", "ratio", "peak RSS MiB", "step MiB",
              "others%"]
    rows = []
    for res in results:
        for impl in ("ptmzoo", "transformers"):
            s = res["results"][impl]
            rows.append([
                res["preset"], impl, f"{s['tokens_per_s']:,.0f}",
                f"{s['tokens_per_s_min']:,.0f}-{s['tokens_per_s_max']:,.0f}", f"{s['ms_per_step']:.1f}",
                f"{res['ratio_ptmzoo_over_transformers']:.2f}x" if impl == "ptmzoo" else "1.00x",
                "-" if s["rss_peak_mib"] is None else f"{s['rss_peak_mib']:,.0f}",
                "-" if s["rss_step_mib"] is None else f"{s['rss_step_mib']:,.0f}",
                "-" if s["others_cpu_max"] is None else f"{100 * s['others_cpu_max']:.0f}",
            ])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    left = {0, 1}
    lines = []
    for row in [header, ["-" * w for w in widths]] + rows:
        lines.append("  ".join(str(x).ljust(w) if i in left else str(x).rjust(w)
                               for i, (x, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--presets", default="bert-tiny,gpt2-tiny", help="comma-separated ptmzoo presets")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="text corpus for the tokenizer and the batches")
    ap.add_argument("--seq-len", type=int, default=128, help="sequence length (tokens)")
    ap.add_argument("--bert-batch", type=int, default=32, help="BERT sequences per step")
    ap.add_argument("--gpt2-batch", type=int, default=16, help="GPT-2 sequences per step")
    ap.add_argument("--bert-vocab", type=int, default=30522, help="model vocabulary (BERT's real one)")
    ap.add_argument("--gpt2-vocab", type=int, default=50257, help="model vocabulary (GPT-2's real one)")
    ap.add_argument("--gpt2-act", default="gelu_new",
                    help="transformers activation_function for GPT-2 (gelu_new is GPT-2's; "
                         "gelu_pytorch_tanh is the same function as one fused op)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per implementation (interleaved)")
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per round")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (both sides)")
    ap.add_argument("--seed", type=int, default=0, help="seed for data (masks, pairs) and initial weights")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="after timing, profile this many steps per implementation (torch.profiler)")
    ap.add_argument("--profile-top", type=int, default=15, help="rows of the profiler table")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "cpu_pretrain.json"))
    args = ap.parse_args(argv)
    if min(args.rounds, args.steps) < 1 or args.warmup < 0:
        ap.error("--rounds and --steps must be at least 1, --warmup at least 0")
    if not os.path.isfile(args.corpus):
        ap.error(f"corpus not found: {args.corpus} (the shared data folder is expected beside the project; "
                 "or pass --corpus FILE with any plain-text corpus)")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()  # e.g. the loss_type=None notice on every GPT-2 build
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "dtype": "float32", "device": "cpu", "loadavg_start": load_average(),
    }
    from importlib.metadata import PackageNotFoundError, version

    try:
        env["ptmzoo"] = version("ptmzoo")
    except PackageNotFoundError:
        env["ptmzoo"] = "unknown"
    print(f"torch {env['torch']}, transformers {env['transformers']}, ptmzoo {env['ptmzoo']}, "
          f"python {env['python']}; {env['threads']} threads on {env['cpu']} ({env['cpu_count']} CPUs); fp32")
    print(f"per implementation: {args.warmup} warm-up steps, then {args.rounds} rounds x {args.steps} steps, "
          "interleaved; median over rounds\n", flush=True)

    meter = RssMeter()
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ptmzoo-bench-") as workdir:
        for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
            results.append(bench_preset(name, args, workdir, meter))
            gc.collect()
    table = fmt_table(results)
    print("\n" + table)
    print("\nratio = ptmzoo tokens/s / transformers tokens/s (>1: ptmzoo faster). tokens = non-padding input "
          "tokens.\npeak RSS = process peak while that implementation ran (includes both models and the data); "
          "step MiB = that peak minus the RSS just before the round." if meter.resettable else
          "\nratio = ptmzoo tokens/s / transformers tokens/s (>1: ptmzoo faster). peak RSS: whole process.")
    env["loadavg_end"] = load_average()
    print("others% = the most CPU time other processes took during one of its timed rounds (% of all CPUs).")
    print(f"load average (1/5/15 min) at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    others = [s["others_cpu_max"] for res in results for s in res["results"].values()
              if s["others_cpu_max"] is not None]
    if others and max(others) > 0.10:
        print(f"WARNING: other processes used up to {100 * max(others):.0f}% of the CPUs during timed rounds; "
              "the figures (and ratios) are unreliable. Rerun on an idle machine.")
    out = {"env": env, "args": vars(args), "wall_seconds": time.perf_counter() - started, "presets": results,
           "table": table}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, default=str)
    print(f"wrote {args.json} ({out['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
