"""The GPU table in one command: ptmzoo against Hugging Face ``transformers``, side by side.

Every workload builds the ptmzoo model from a preset (``ptmzoo.catalog.build_model``) and the
``transformers`` model from it with ``ptmzoo.interop.hf.to_hf_model`` (the same config and the
same weights), gives both the same tensors, checks that they agree on the first batch (loss, or
logits / hidden states), then times them alternately in one process (the order flips every round):

    gpt2_train     GPT-2 124M causal LM training B16x1024: eager and torch.compile on both sides
    bert_mlm_512   BERT-base MLM training B32x512 (eager)
    bert_mlm_128   BERT-base MLM training B128x128 (eager)
    bert_infer     BERT-base encoder inference B64x128, fixed length and variable length (5-128;
                   ptmzoo in its predict paths' batches of similar length, transformers padded)
    gpt2_generate  GPT-2 124M greedy generation, batch 1 and 8, 256 new tokens: transformers eager
                   ``generate`` and static cache + compile; ptmzoo eager and static cache + compiled
                   step (replayed as a CUDA graph on a GPU: ``generation.decoding.compile_step``)
    t5_train       T5-small training B32, 512 -> 128 tokens (eager)

Per row: tokens/s (median over rounds), MFU (model FLOPs: 6N + attention per token for training,
2N + attention for inference, against the bf16 matmul peak measured at the start), peak memory,
ratio ptmzoo / transformers. CUDA: bf16 autocast for training (fp32 weights, fused AdamW), bf16
weights for inference and generation. ``--smoke`` runs every workload at tiny sizes on the CPU.

    .venv/bin/python bench/gpu_suite.py                       # the whole table (needs CUDA)
    .venv/bin/python bench/gpu_suite.py --only gpt2_train,bert_infer
    .venv/bin/python bench/gpu_suite.py --smoke --json /tmp/smoke.json   # tiny, CPU, a minute or two
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cpu_generate import run_ptmzoo, run_transformers
from cpu_pretrain import RssMeter, cpu_model, load_average

VOCAB = {"bert": 30522, "gpt2": 50257, "t5": 32128}
SMOKE_VOCAB = 512


@dataclass(frozen=True)
class Sizes:
    """Shapes of one workload: the full ones and the ``--smoke`` ones."""

    preset: str
    batch: int
    length: int
    target_length: int = 0  # T5: decoder tokens
    batches: tuple[int, ...] = ()  # generation
    new_tokens: int = 0
    prompt: int = 0


SIZES = {  # workload: (full sizes, --smoke sizes)
    "gpt2_train": (Sizes("gpt2-small", 16, 1024), Sizes("gpt2-tiny", 2, 32)),
    "bert_mlm_512": (Sizes("bert-base", 32, 512), Sizes("bert-tiny", 2, 32)),
    "bert_mlm_128": (Sizes("bert-base", 128, 128), Sizes("bert-tiny", 2, 16)),
    "bert_infer": (Sizes("bert-base", 64, 128), Sizes("bert-tiny", 2, 16)),
    "gpt2_generate": (Sizes("gpt2-small", 0, 0, batches=(1, 8), new_tokens=256, prompt=32),
                      Sizes("gpt2-tiny", 0, 0, batches=(1, 2), new_tokens=8, prompt=4)),
    "t5_train": (Sizes("t5-small", 32, 512, target_length=128), Sizes("t5-tiny", 2, 16, target_length=8)),
}


# ---- setting ---------------------------------------------------------------------------------------


@dataclass
class Setting:
    device: torch.device
    smoke: bool
    warmup: int
    rounds: int
    steps: int
    max_seconds: float
    generation_steps: int
    generation_warmup: int
    seed: int
    lr: float
    compile_backend: str
    peak_flops: float = 0.0
    meter: RssMeter | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def compiling(self):
        """Where ptmzoo compiles inside (its generation step: ``torch.compile`` with its own mode),
        make it use ``compile_backend`` when that is not inductor (the smoke run's cheap aot_eager)."""
        if self.compile_backend == "inductor":
            return nullcontext()
        from unittest import mock

        original, backend = torch.compile, self.compile_backend

        def compile_with_backend(fn=None, **options):
            options.pop("mode", None)  # modes are inductor's
            return original(fn, **{**options, "backend": backend})

        return mock.patch.object(torch, "compile", compile_with_backend)

    def autocast(self):
        """bf16 autocast on CUDA; fp32 on the CPU (where bf16 is slower, and the smoke run checks logic)."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    @property
    def infer_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.cuda else torch.float32

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def tolerance(self, states: bool = False) -> float:
        """Relative tolerance of the first-batch checks (``states``: max |difference| of hidden
        states or logits, not a loss): bf16 rounding on CUDA, fp32 on the CPU."""
        return (5e-2 if states else 3e-2) if self.cuda else 1e-4


def measure_peak_flops(setting: Setting) -> dict:
    """Matmul throughput of this device in the dtype the rows compute in (bf16 on CUDA): the MFU peak."""
    n, dtype, iters = (8192, torch.bfloat16, 50) if setting.cuda else (512, torch.float32, 10)
    a = torch.randn(n, n, device=setting.device, dtype=dtype)
    b = torch.randn(n, n, device=setting.device, dtype=dtype)
    for _ in range(3):
        a @ b
    setting.sync()
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    setting.sync()
    seconds = time.perf_counter() - start
    del a, b
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_s": 2 * n**3 * iters / seconds}


# ---- models ----------------------------------------------------------------------------------------


def build_pair(preset_name: str, heads: tuple[str, ...], setting: Setting, **overrides):
    """(ptmzoo model, transformers model) with the same config and weights, in training mode."""
    import ptmzoo.objectives  # noqa: F401  (registers the heads)
    from ptmzoo.catalog import build_model
    from ptmzoo.interop.hf import to_hf_model
    from ptmzoo.presets import get_preset

    preset = get_preset(preset_name)
    vocab = SMOKE_VOCAB if setting.smoke else VOCAB[preset.family]
    config = {**preset.model, "vocab_size": vocab, **overrides}
    torch.manual_seed(setting.seed)
    ptm = build_model(preset.family, config, heads={kind: {"kind": kind} for kind in heads})
    hf = to_hf_model(ptm, attn_implementation="sdpa")
    return ptm.to(setting.device).train(), hf.to(setting.device).train()


def linear_weights(module: torch.nn.Module, skip: torch.Tensor | None = None) -> int:
    """Weights of the Linear layers in ``module`` (each tensor once; ``skip``: a tied embedding)."""
    seen = {id(skip)} if skip is not None else set()
    total = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            total += m.weight.numel()
    return total


def lm_flops(model, tokens: int, context: float, predicted: float = 1.0) -> float:
    """Forward FLOPs of a decoder-only or encoder-only ``model`` over ``tokens`` tokens that attend to
    ``context`` keys on average: 2 per weight of every Linear layer, ``predicted`` (the share of
    positions with an output) x (head + vocabulary projection), and 4 x layers x width x context for
    the scores and the weighted values (the convention of the PaLM paper: causal masks not halved)."""
    backbone = model.backbone
    embed = backbone.input_embeddings.weight
    head = sum(linear_weights(h, skip=embed) for h in model.heads.values())
    vocab = embed.numel() if model.heads else 0
    cfg = model.config
    attention = 4 * cfg.num_layers * cfg.hidden_size * context
    return tokens * (2 * linear_weights(backbone) + 2 * predicted * (head + vocab) + attention)


def storages(tensors) -> dict[int, int]:
    """{storage address: bytes} of ``tensors`` (tied or shared weights once)."""
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors
            if isinstance(t, torch.Tensor)}


# ---- timing ----------------------------------------------------------------------------------------


@dataclass
class Impl:
    """One row: ``run(i)`` does one unit of work (an optimizer step, a forward, a generation) and
    returns (tokens, FLOPs) of it; ``owned()`` lists the tensors it keeps on the device."""

    name: str
    baseline: str | None  # the transformers row its ratio is taken against (None: it is one)
    run: object
    owned: object
    check: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def time_rows(impls: list[Impl], setting: Setting, label: str, generation: bool = False) -> None:
    """Warm-up, then rounds of ``steps`` runs per row, alternating the order; stops starting rounds
    after ``max_seconds`` (at least one round). ``generation``: each run is a whole generation."""
    start = time.perf_counter()
    warmup = setting.generation_warmup if generation else setting.warmup
    steps = setting.generation_steps if generation else setting.steps
    for impl in impls:
        for i in range(warmup):
            impl.run(i)
        setting.sync()
    for r in range(setting.rounds):
        order = impls if r % 2 == 0 else impls[::-1]
        for impl in order:
            own = storages(impl.owned())
            others = sum(n for o in impls if o is not impl for p, n in storages(o.owned()).items() if p not in own)
            gc.collect()
            if setting.cuda:
                torch.cuda.synchronize(setting.device)
                torch.cuda.reset_peak_memory_stats(setting.device)
            elif setting.meter is not None:
                setting.meter.start()
            tokens = flops = 0.0
            t0 = time.perf_counter()
            for i in range(steps):
                t, f = impl.run(warmup + r * steps + i)
                tokens += t
                flops += f
            setting.sync()
            seconds = time.perf_counter() - t0
            if setting.cuda:
                peak = (torch.cuda.max_memory_allocated(setting.device) - others) / 2**20
            else:
                peak = setting.meter.peak() if setting.meter is not None else None
            impl.rounds.append({"seconds": seconds, "tokens": tokens, "flops": flops,
                                "tokens_per_s": tokens / seconds, "peak_mib": peak})
        print(f"  {label} round {r + 1}: " + ", ".join(
            f"{i.name} {i.rounds[-1]['tokens_per_s']:,.0f} tok/s" for i in impls), flush=True)
        if time.perf_counter() - start > setting.max_seconds and r + 1 < setting.rounds:
            print(f"  {label}: --max-seconds {setting.max_seconds:g} reached after {r + 1} rounds", flush=True)
            break


def summarize(workload: str, label: str, impls: list[Impl], setting: Setting) -> list[dict]:
    rows = []
    by_name = {}
    for impl in impls:
        tps = [r["tokens_per_s"] for r in impl.rounds]
        median = statistics.median(tps)
        flops_per_token = sum(r["flops"] for r in impl.rounds) / sum(r["tokens"] for r in impl.rounds)
        peaks = [r["peak_mib"] for r in impl.rounds if r["peak_mib"] is not None]
        row = {"workload": workload, "case": label, "implementation": impl.name, "tokens_per_s": median,
               "tokens_per_s_min": min(tps), "tokens_per_s_max": max(tps), "rounds": len(tps),
               "flops_per_token": flops_per_token, "mfu": median * flops_per_token / setting.peak_flops,
               "peak_mib": max(peaks) if peaks else None, "baseline": impl.baseline, "check": impl.check,
               **impl.extra}
        by_name[impl.name] = row
        rows.append(row)
    for row in rows:
        base = by_name.get(row["baseline"]) if row["baseline"] else row
        row["ratio"] = row["tokens_per_s"] / base["tokens_per_s"]
        eager = by_name.get("transformers")
        if eager is not None:
            row["ratio_vs_transformers_eager"] = row["tokens_per_s"] / eager["tokens_per_s"]
    return rows


def close_check(mine: float, reference: float, what: str, tol: float) -> dict:
    """A first-batch check: ``mine`` (a loss, or a max |difference|) against ``reference``."""
    delta = abs(mine - reference) / max(1.0, abs(reference))
    return {"what": what, "value": mine, "reference": reference, "relative_difference": delta, "tolerance": tol,
            "passed": bool(delta <= tol)}


# ---- training --------------------------------------------------------------------------------------


class Trainer:
    """forward (loss) under autocast + backward + clip_grad_norm_(1.0) + fused AdamW + zero_grad.
    The loss is only read back for the first step (the check), so steps queue without a sync."""

    def __init__(self, model, loss_fn, batches, flops_per_step, tokens_per_step, setting: Setting,
                 compiled: bool = False):
        self.model = model
        self.forward = torch.compile(model, backend=setting.compile_backend) if compiled else model
        self.loss_fn, self.batches, self.setting = loss_fn, batches, setting
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=setting.lr, fused=True)
        self.flops, self.tokens = flops_per_step, tokens_per_step
        self.first_loss: float | None = None

    def __call__(self, i: int) -> tuple[float, float]:
        batch = self.batches[i % len(self.batches)]
        with self.setting.autocast():
            loss = self.loss_fn(self.forward, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.first_loss is None:
            self.first_loss = float(loss.detach())
        return self.tokens, self.flops

    def owned(self):
        state = [t for s in self.optimizer.state.values() for t in s.values()]
        return list(self.model.parameters()) + list(self.model.buffers()) + state


def train_rows(workload: str, ptm, hf, ptm_loss, hf_loss, batches, flops, tokens, setting: Setting,
               compiled: bool) -> list[dict]:
    """ptmzoo and transformers (and, when ``compiled``, a torch.compile copy of each, starting from
    the same initial weights) trained on the same batches; each first step's loss is checked against
    transformers eager's. Dropout is off on both sides so that these losses are comparable."""
    variants = [("ptmzoo", ptm, ptm_loss, False, "transformers"), ("transformers", hf, hf_loss, False, None)]
    if compiled:
        variants += [("ptmzoo+compile", copy.deepcopy(ptm), ptm_loss, True, "transformers+compile"),
                     ("transformers+compile", copy.deepcopy(hf), hf_loss, True, None)]
    impls = []
    for name, model, loss_fn, comp, baseline in variants:
        trainer = Trainer(model, loss_fn, batches, flops, tokens, setting, compiled=comp)
        impls.append(Impl(name, baseline, trainer, trainer.owned))
    time_rows(impls, setting, workload)
    reference = impls[1].run.first_loss
    for impl in impls:
        impl.check = close_check(impl.run.first_loss, reference, "first-step loss vs transformers eager",
                                 setting.tolerance())
    return summarize(workload, f"B{len(batches[0]['input_ids'])}x{batches[0]['input_ids'].shape[1]}", impls,
                     setting)


def random_ids(shape, vocab: int, generator: torch.Generator, low: int = 1) -> torch.Tensor:
    """Seeded random token ids (speed does not depend on the text); 0 is kept for padding."""
    return torch.randint(low, vocab, shape, generator=generator)


def mlm_batches(ptm, sizes: Sizes, setting: Setting, count: int = 2) -> list[dict]:
    """BERT MLM batches: 15% of the positions masked (the [MASK] id replaces them), the rest -100."""
    gen = torch.Generator().manual_seed(setting.seed)
    vocab = ptm.config.vocab_size
    out = []
    for _ in range(count):
        ids = random_ids((sizes.batch, sizes.length), vocab, gen, low=5)
        chosen = torch.rand(ids.shape, generator=gen) < 0.15
        chosen[:, 0] = True  # every row has a target
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        inputs = torch.where(chosen, torch.full_like(ids, 4), ids)
        batch = {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
                 "mlm_labels": labels}
        out.append({k: v.to(setting.device) for k, v in batch.items()})
    return out


def bert_mlm(workload: str, sizes: Sizes, setting: Setting) -> list[dict]:
    # no pooler: MLM does not read it, and transformers' BertForMaskedLM has none
    ptm, hf = build_pair(sizes.preset, ("mlm",), setting, hidden_dropout=0.0, attention_dropout=0.0, add_pooler=False)
    batches = mlm_batches(ptm, sizes, setting)
    masked = sum(float((b["mlm_labels"] != -100).float().mean()) for b in batches) / len(batches)
    tokens = sizes.batch * sizes.length
    flops = 3 * lm_flops(ptm, tokens, sizes.length, predicted=masked)

    def ptm_loss(model, b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                     targets=b).loss

    def hf_loss(model, b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                     labels=b["mlm_labels"]).loss

    return train_rows(workload, ptm, hf, ptm_loss, hf_loss, batches, flops, tokens, setting, compiled=False)


def gpt2_train(workload: str, sizes: Sizes, setting: Setting) -> list[dict]:
    ptm, hf = build_pair(sizes.preset, ("clm",), setting, hidden_dropout=0.0, attention_dropout=0.0)
    gen = torch.Generator().manual_seed(setting.seed)
    batches = []
    for _ in range(2):
        ids = random_ids((sizes.batch, sizes.length), ptm.config.vocab_size, gen)
        # packed full-length blocks: no attention mask on either side (an all-ones mask makes
        # ptmzoo's causal_mask test it on the host, a graph break under torch.compile)
        batches.append({"input_ids": ids.to(setting.device), "lm_labels": ids.to(setting.device)})
    tokens = sizes.batch * sizes.length
    flops = 3 * lm_flops(ptm, tokens, sizes.length)

    def ptm_loss(model, b):
        return model(input_ids=b["input_ids"], targets=b).loss

    def hf_loss(model, b):
        return model(input_ids=b["input_ids"], labels=b["lm_labels"]).loss

    return train_rows(workload, ptm, hf, ptm_loss, hf_loss, batches, flops, tokens, setting, compiled=True)


def t5_train(workload: str, sizes: Sizes, setting: Setting) -> list[dict]:
    ptm, hf = build_pair(sizes.preset, ("seq2seq_lm",), setting, hidden_dropout=0.0, attention_dropout=0.0)
    gen = torch.Generator().manual_seed(setting.seed)
    vocab, start = ptm.config.vocab_size, ptm.backbone.decoder_start_id
    batches = []
    for _ in range(2):
        source = random_ids((sizes.batch, sizes.length), vocab, gen, low=2)
        target = random_ids((sizes.batch, sizes.target_length), vocab, gen, low=2)
        decoder_input = torch.cat([torch.full_like(target[:, :1], start), target[:, :-1]], dim=1)
        batch = {"input_ids": source, "attention_mask": torch.ones_like(source), "decoder_input_ids": decoder_input,
                 "seq2seq_labels": target}
        batches.append({k: v.to(setting.device) for k, v in batch.items()})
    src, tgt, cfg = sizes.batch * sizes.length, sizes.batch * sizes.target_length, ptm.config
    backbone = ptm.backbone
    embed = backbone.input_embeddings.weight
    width = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim  # x context: scores and weighted values
    forward = (2 * linear_weights(backbone.encoder) * src + width * sizes.length * src
               + 2 * (linear_weights(backbone.decoder) + embed.numel()) * tgt
               + width * (sizes.target_length + sizes.length) * tgt)  # decoder self- and cross-attention
    tokens = src + tgt

    def ptm_loss(model, b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], targets=b).loss

    def hf_loss(model, b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     decoder_input_ids=b["decoder_input_ids"], labels=b["seq2seq_labels"]).loss

    rows = train_rows(workload, ptm, hf, ptm_loss, hf_loss, batches, 3 * forward, tokens, setting, compiled=False)
    for row in rows:
        row["case"] = f"B{sizes.batch} {sizes.length}->{sizes.target_length}"
    return rows


# ---- inference -------------------------------------------------------------------------------------


def bert_infer(workload: str, sizes: Sizes, setting: Setting) -> list[dict]:
    """The bare encoder (ptmzoo: no heads; transformers: BertModel) on a full-length batch and on a
    batch of lengths 5..L: transformers right-padded to L, ptmzoo in the batches of similar length
    that its predict paths use (``length_batches``); tokens and FLOPs count real tokens only."""
    ptm, hf = build_pair(sizes.preset, (), setting)
    ptm, hf = ptm.to(setting.infer_dtype).eval(), hf.to(setting.infer_dtype).eval()
    gen = torch.Generator().manual_seed(setting.seed)
    variable = torch.randint(min(5, sizes.length), sizes.length + 1, (sizes.batch,), generator=gen).tolist()
    rows = []
    for label, lengths in [("fixed", [sizes.length] * sizes.batch), ("variable", variable)]:
        rows += encoder_case(workload, label, ptm, hf, lengths, sizes, setting, gen)
    return rows


def encoder_case(workload: str, label: str, ptm, hf, lengths: list[int], sizes: Sizes, setting: Setting,
                 gen: torch.Generator) -> list[dict]:
    from ptmzoo.tasks.base import length_batches

    ids = random_ids((sizes.batch, sizes.length), ptm.config.vocab_size, gen, low=5)
    mask = (torch.arange(sizes.length)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids, mask = (ids * mask).to(setting.device), mask.to(setting.device)
    tokens, flops = float(sum(lengths)), sum(lm_flops(ptm, n, n) for n in lengths)
    # ptmzoo's batches: rows of similar length, each cut to its longest row
    buckets = []
    for rows in length_batches(lengths, sizes.batch):
        index, longest = torch.tensor(rows, device=setting.device), max(lengths[r] for r in rows)
        buckets.append((index, ids[index, :longest], mask[index, :longest]))

    def forward(model, batches):
        @torch.inference_mode()
        def run(i):
            for _, batch_ids, batch_mask in batches:
                model(input_ids=batch_ids, attention_mask=batch_mask)
            return tokens, flops
        return run

    with torch.inference_mode():
        real = mask.bool()
        mine = torch.zeros(sizes.batch, sizes.length, ptm.config.hidden_size, device=setting.device)
        for index, batch_ids, batch_mask in buckets:
            states = ptm(input_ids=batch_ids, attention_mask=batch_mask).last_hidden_state
            mine[index, : batch_ids.shape[1]] = states.float()
        mine = mine[real]
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state[real].float()
    check = close_check(float((mine - theirs).abs().max() / theirs.abs().max()), 0.0,
                        "max |hidden state difference| / max |hidden state|, real tokens",
                        setting.tolerance(states=True))
    impls = [Impl("ptmzoo", "transformers", forward(ptm, buckets), lambda: list(ptm.parameters()), check=check,
                  extra={"length_batches": [len(b[0]) for b in buckets]}),
             Impl("transformers", None, forward(hf, [(None, ids, mask)]), lambda: list(hf.parameters()),
                  check={"what": "reference", "passed": True})]
    time_rows(impls, setting, f"{workload} {label}")
    return summarize(workload, f"{label} B{sizes.batch}x{sizes.length} ({int(tokens)} tokens)", impls, setting)


def gpt2_generate(workload: str, sizes: Sizes, setting: Setting) -> list[dict]:
    """Greedy generation with the end-of-text token ignored (exactly ``new_tokens`` per prompt) from
    seeded random prompts of equal length (no padding); tokens = new tokens, prompt included in the
    time. The check: the prompt's next-token logits of both models; token agreement is reported."""
    ptm, hf = build_pair(sizes.preset, ("clm",), setting)
    ptm, hf = ptm.to(setting.infer_dtype).eval(), hf.to(setting.infer_dtype).eval()
    gen = torch.Generator().manual_seed(setting.seed)
    rows = []
    for batch in sizes.batches:
        prompts = random_ids((batch, sizes.prompt), ptm.config.vocab_size, gen).to(setting.device)
        rows += generation_case(workload, ptm, hf, prompts, sizes, setting)
        ptm.__dict__.pop("_compiled_decoders", None)  # free this batch size's static cache
    return rows


def generation_case(workload: str, ptm, hf, prompts: torch.Tensor, sizes: Sizes, setting: Setting) -> list[dict]:
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=False, backend=setting.compile_backend,
                                   mode="reduce-overhead" if setting.cuda else "default")
    compile_config._compile_all_devices = True  # also on the CPU (the smoke run)
    batch, new = prompts.shape[0], sizes.new_tokens
    if sizes.prompt + new > ptm.backbone.max_length:
        raise ValueError(f"prompt + new tokens exceed the context of {sizes.preset}")
    flops = lm_flops(ptm, batch * sizes.prompt, sizes.prompt) + sum(
        lm_flops(ptm, batch, sizes.prompt + k + 1) for k in range(new - 1))
    tokens = float(batch * new)
    outputs: dict[str, list] = {}

    def compiled_ptmzoo():
        with setting.compiling():
            return run_ptmzoo(ptm, prompts, new, compile=True)

    variants = {  # name: (its baseline, the model, one generation)
        "ptmzoo": ("transformers", ptm, lambda: run_ptmzoo(ptm, prompts, new)),
        "transformers": (None, hf, lambda: run_transformers(hf, prompts, new)),
        "ptmzoo+compile": ("transformers+compile", ptm, compiled_ptmzoo),
        "transformers+compile": (None, hf, lambda: run_transformers(
            hf, prompts, new, cache_implementation="static", compile_config=compile_config)),
    }

    def runner(name, fn):
        def run(i):
            outputs.setdefault(name, fn())
            return tokens, flops
        return run

    def weights(model):
        return lambda: list(model.parameters())

    with torch.inference_mode():
        mine = ptm(input_ids=prompts).logits[:, -1].float()
        theirs = hf(input_ids=prompts).logits[:, -1].float()
    logit_check = close_check(float((mine - theirs).abs().max() / theirs.abs().max()), 0.0,
                              "max |prompt logit difference| / max |logit|", setting.tolerance(states=True))
    impls = [Impl(name, baseline, runner(name, fn), weights(model)) for name, (baseline, model, fn) in variants.items()]
    time_rows(impls, setting, f"{workload} batch {batch}", generation=True)
    reference = outputs["transformers"]
    for impl in impls:
        same = [a == b for ra, rb in zip(outputs[impl.name], reference) for a, b in zip(ra, rb)]
        impl.extra["same_tokens_as_transformers"] = sum(same) / len(same)
        impl.check = dict(logit_check) if impl.name.startswith("ptmzoo") else {"what": "reference", "passed": True}
    return summarize(workload, f"batch {batch}, {sizes.prompt}+{new} tokens", impls, setting)


WORKLOADS = {"gpt2_train": gpt2_train, "bert_mlm_512": bert_mlm, "bert_mlm_128": bert_mlm,
             "bert_infer": bert_infer, "gpt2_generate": gpt2_generate, "t5_train": t5_train}


# ---- output ----------------------------------------------------------------------------------------


def fmt_table(rows: list[dict]) -> str:
    header = ["workload", "case", "implementation", "tokens/s", "(min-max)", "MFU", "peak MiB", "ratio", "vs HF eager",
              "check", "same tokens"]
    lines = []
    for r in rows:
        check = r["check"]
        status = "ok" if check.get("passed") else "FAIL"
        if "relative_difference" in check:
            status += f" ({check['relative_difference']:.1e})"
        lines.append([r["workload"], r["case"], r["implementation"], f"{r['tokens_per_s']:,.0f}",
                      f"{r['tokens_per_s_min']:,.0f}-{r['tokens_per_s_max']:,.0f}", f"{100 * r['mfu']:.1f}%",
                      "-" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}", f"{r['ratio']:.2f}x",
                      f"{r.get('ratio_vs_transformers_eager', 1.0):.2f}x", status,
                      f"{100 * r['same_tokens_as_transformers']:.0f}%" if "same_tokens_as_transformers" in r else "-"])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    left = {0, 1, 2, 9}
    out = []
    for row in [header, ["-" * w for w in widths]] + lines:
        out.append("  ".join(str(x).ljust(w) if i in left else str(x).rjust(w) for i, (x, w) in
                             enumerate(zip(row, widths))))
    return "\n".join(out)


def parse_only(value: str | None) -> list[str]:
    """The workloads ``--only`` names (comma-separated, in the suite's order); all without it."""
    if value is None:
        return list(WORKLOADS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise ValueError(f"--only: unknown workload {', '.join(unknown) or repr(value)} "
                         f"(choose from {', '.join(WORKLOADS)})")
    return [n for n in WORKLOADS if n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--only", help=f"comma-separated workloads (of {', '.join(WORKLOADS)}); default: all")
    ap.add_argument("--smoke", action="store_true", help="tiny models, batch 2, short sequences, 2 steps, on the CPU")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps / forwards per row (default 3; smoke 1); generations: 2 (smoke 1)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per row, alternating (default 3; smoke 2)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps / forwards per round (default 5; smoke 1); generations per round: 1")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="no new round of a workload's case starts after this many seconds (one round at least)")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; smoke aot_eager)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "gpu_suite.json"))
    args = ap.parse_args(argv)
    try:
        names = parse_only(args.only)
        device = torch.device(args.device)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.smoke and (device.type != "cuda" or not torch.cuda.is_available()):
        print("error: the full-size suite needs a CUDA device (or --smoke: tiny sizes on the CPU)", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    setting = Setting(device=device, smoke=args.smoke, warmup=args.warmup if args.warmup is not None else
                      (1 if args.smoke else 3), rounds=args.rounds or (2 if args.smoke else 3),
                      steps=args.steps or (1 if args.smoke else 5), max_seconds=args.max_seconds, seed=args.seed,
                      generation_warmup=args.warmup if args.warmup is not None else (1 if args.smoke else 2),
                      generation_steps=1,
                      lr=args.lr, compile_backend=args.compile_backend or ("aot_eager" if args.smoke else "inductor"),
                      meter=None if device.type == "cuda" else RssMeter())
    if setting.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak = measure_peak_flops(setting)
    setting.peak_flops = peak["flops_per_s"]
    from importlib.metadata import PackageNotFoundError, version

    try:
        ptmzoo_version = version("ptmzoo")
    except PackageNotFoundError:
        ptmzoo_version = "unknown"
    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "ptmzoo": ptmzoo_version, "device": str(device), "smoke": args.smoke, "cpu": cpu_model(),
           "threads": torch.get_num_threads(), "loadavg_start": load_average(),
           "gpu": torch.cuda.get_device_name(device) if setting.cuda else None, "matmul_peak": peak}
    print(f"torch {env['torch']}, transformers {env['transformers']}, ptmzoo {env['ptmzoo']}; device "
          f"{env['gpu'] or env['cpu']}{' (smoke: tiny sizes)' if args.smoke else ''}; matmul peak "
          f"{peak['flops_per_s'] / 1e12:.2f} TFLOP/s ({peak['dtype']}, n={peak['n']})", flush=True)
    rows, errors, started = [], {}, time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        sizes = SIZES[name][1 if args.smoke else 0]
        print(f"{name}: {sizes}", flush=True)
        try:
            rows += WORKLOADS[name](name, sizes, setting)
        except Exception as exc:  # noqa: BLE001  (one broken workload must not cost the rest of the table)
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: FAILED ({errors[name]}); continuing with the next workload", flush=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        gc.collect()
        if setting.cuda:
            torch.cuda.empty_cache()
        torch._dynamo.reset()
    table = fmt_table(rows)
    print("\n" + table)
    print("\nratio: tokens/s / its transformers row's (eager vs eager, compile vs compile); vs HF eager: against "
          "transformers eager.\nMFU: model FLOPs (6N + attention per token in training, 2N + attention in inference) / "
          "the matmul peak above.\npeak MiB: " + ("max_memory_allocated during its rounds less the other rows' "
                                                  "weights and optimizer state." if setting.cuda else
                                                  "process peak RSS during its rounds (includes every model)."))
    env["loadavg_end"] = load_average()
    failed = [f"{r['workload']} {r['case']} {r['implementation']}" for r in rows if not r["check"].get("passed")]
    failed += [f"{name}: {error}" for name, error in errors.items()]
    if failed:
        print("FAILED (checks, workloads): " + "; ".join(failed))
    out = {"env": env, "args": vars(args), "wall_seconds": time.perf_counter() - started, "rows": rows, "errors": errors,
           "table": table}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, default=str)
    print(f"wrote {args.json} ({out['wall_seconds']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
