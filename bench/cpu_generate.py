"""Greedy generation speed on CPU: ptmzoo's ``generate`` against ``transformers``' ``generate``.

Both run the *same weights* (the ptmzoo model converted with ``to_hf_model``, SDPA attention)
on the *same prompts* (seeded random token ids, equal lengths so that neither pads), greedy,
with the end-of-text token ignored so that every run makes exactly ``--new-tokens`` tokens per
prompt; the script checks that both produce the same tokens. Implementations alternate in one
process (the order flips every round); the figure is the median over rounds of new tokens per
second (batch x new tokens / wall time, prompt processing included). Memory: ``extra MiB`` is the
peak resident memory during a call above the resident memory just before it (Linux VmHWM, reset
before each call; the models, loaded once, are not in it). Other processes' share of the CPU is
reported, since load on a shared machine slows both down.

    .venv/bin/python bench/cpu_generate.py                       # gpt2-tiny, GPT-2 vocabulary
    .venv/bin/python bench/cpu_generate.py --preset gpt2-small --rounds 3
    .venv/bin/python bench/cpu_generate.py --compile       # also ptmzoo with the compiled static-cache step
    .venv/bin/python bench/cpu_generate.py --preset gpt2-small --quantized weight-int8,dynamic-int8

``--quantized METHODS`` adds rows of ptmzoo with int8 weights (``ptmzoo quantize`` methods, a copy
of the same model) against the same transformers fp32 baseline; their tokens are not expected to be
identical, so the share of positions that agree with fp32 is reported. The memory-bandwidth
bound: the script times reading a 512 MiB tensor (``sum``, the same threads) for the machine's
read bandwidth, and reports for every row the weight bytes read per decoding step (each step reads
every weight once; an upper estimate, since an input embedding table is read only by row) x steps
per second, as GB/s and as a share of that bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cpu_pretrain import CpuMonitor, RssMeter, cpu_model, load_average


def build_models(preset_name: str, vocab_size: int, seed: int):
    from ptmzoo.catalog import build_model
    from ptmzoo.interop.hf import to_hf_model
    from ptmzoo.objectives.clm import LMHead
    from ptmzoo.presets import get_preset

    preset = get_preset(preset_name)
    torch.manual_seed(seed)
    model = build_model(preset.family, {**preset.model, "vocab_size": vocab_size})
    model.add_head("clm", LMHead)
    return model.eval(), to_hf_model(model, attn_implementation="sdpa")


def run_ptmzoo(model, prompts: torch.Tensor, new_tokens: int, compile: bool = False) -> list[list[int]]:
    from ptmzoo.generation import generate

    return generate(model, prompts.tolist(), max_new_tokens=new_tokens, ignore_eos=True, compile=compile).token_ids


@torch.inference_mode()
def run_transformers(hf, prompts: torch.Tensor, new_tokens: int, **options) -> list[list[int]]:
    """``options``: more ``generate`` arguments (e.g. ``cache_implementation="static"``)."""
    out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                      max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0,
                      **options)
    return out[:, prompts.shape[1]:].tolist()


def quantized_copies(model, methods: list[str]) -> dict:
    import copy

    from ptmzoo.compress.quantize import quantize_model

    copies = {}
    for method in methods:
        copies[method] = copy.deepcopy(model)
        quantize_model(copies[method], method)
        copies[method].eval()
    return copies


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer (int8 weights and their scales): what one decoding step reads."""
    tensors = {t.data_ptr(): t for t in [*module.parameters(), *module.buffers()]}  # tied weights once
    return sum(t.numel() * t.element_size() for t in tensors.values())


def read_bandwidth(threads: int, mib: int = 512, repeats: int = 5) -> float:
    """The machine's memory read bandwidth in GB/s: the best of ``repeats`` sums of a ``mib`` MiB tensor."""
    data = torch.ones(mib * 2**20 // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best / 1e9


def bench(model, hf, batch: int, args, monitor: CpuMonitor, meter: RssMeter, quantized: dict) -> dict:
    gen = torch.Generator().manual_seed(args.seed + batch)
    prompts = torch.randint(0, model.config.vocab_size, (batch, args.prompt_tokens), generator=gen)
    runners = {"ptmzoo": lambda: run_ptmzoo(model, prompts, args.new_tokens),
               "transformers": lambda: run_transformers(hf, prompts, args.new_tokens)}
    models = {"ptmzoo": model, "transformers": hf}
    if args.compile:
        runners["ptmzoo+compile"] = lambda: run_ptmzoo(model, prompts, args.new_tokens, compile=True)
        models["ptmzoo+compile"] = model
    for method, copy_ in quantized.items():
        runners[f"ptmzoo {method}"] = lambda m=copy_: run_ptmzoo(m, prompts, args.new_tokens)
        models[f"ptmzoo {method}"] = copy_
    outputs = {name: run() for name, run in runners.items()}  # warm-up (compiles), and the tokens to compare
    times: dict[str, list[float]] = {name: [] for name in runners}
    extra: dict[str, list[float]] = {name: [] for name in runners}
    others = []
    for round_ in range(args.rounds):
        order = list(runners) if round_ % 2 == 0 else list(reversed(runners))  # alternate who goes first
        for name in order:
            base = meter.start()
            monitor.start()
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
            others.append(monitor.others())
            peak = meter.peak()
            if base is not None and peak is not None:
                extra[name].append(peak - base)
    tokens = batch * args.new_tokens
    exact = [name for name in runners if models[name] is model or name == "transformers"]  # fp32 rows
    result = {"batch": batch, "same_tokens": all(outputs[name] == outputs["transformers"] for name in exact),
              "others_cpu_max": max((o for o in others if o is not None), default=None), "rows": {}}
    baseline = tokens / statistics.median(times["transformers"])
    for name, seconds in times.items():
        steps_per_s = args.new_tokens / statistics.median(seconds)
        agree = [a == b for mine, theirs in zip(outputs[name], outputs["transformers"]) for a, b in zip(mine, theirs)]
        weights = weight_bytes(models[name])
        result["rows"][name] = {
            "tokens_per_s": batch * steps_per_s, "ratio": batch * steps_per_s / baseline, "seconds": seconds,
            "extra_rss_mib": max(extra[name]) if extra[name] else None, "agreement": sum(agree) / len(agree),
            "weight_bytes": weights, "weight_gb_per_s": weights * steps_per_s / 1e9}
    return result


def mib(side: dict) -> str:
    return "-" if side["extra_rss_mib"] is None else f"{side['extra_rss_mib']:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="gpt2-tiny")
    ap.add_argument("--vocab-size", type=int, default=50257)
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="also time ptmzoo's compiled decoding step")
    ap.add_argument("--quantized", default="", help="comma-separated ptmzoo quantize methods to add as rows "
                    "(e.g. weight-int8,dynamic-int8), against the same transformers fp32 baseline")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "cpu_generate.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    model, hf = build_models(args.preset, args.vocab_size, args.seed)
    quantized = quantized_copies(model, [m for m in args.quantized.split(",") if m])
    bandwidth = read_bandwidth(args.threads)
    monitor, meter = CpuMonitor(), RssMeter()
    results = [bench(model, hf, int(b), args, monitor, meter, quantized) for b in args.batches.split(",")]
    print(f"{args.preset}, vocab {args.vocab_size}, prompt {args.prompt_tokens} + {args.new_tokens} new tokens, "
          f"greedy, {args.threads} threads, median of {args.rounds} rounds; read bandwidth {bandwidth:.1f} GB/s "
          f"(sum of a 512 MiB tensor); load average {load_average()}")
    print(f"{'batch':>5} {'implementation':<20} {'tok/s':>8} {'ratio':>6} {'agree':>6} {'weights MB':>11} "
          f"{'GB/s':>6} {'of bound':>9} {'extra MiB':>10} {'others CPU':>11}")
    for r in results:
        others = f"{r['others_cpu_max']:.0%}" if r["others_cpu_max"] is not None else "n/a"
        for name, row in r["rows"].items():
            print(f"{r['batch']:>5} {name:<20} {row['tokens_per_s']:>8.1f} {row['ratio']:>6.2f} "
                  f"{row['agreement']:>6.0%} {row['weight_bytes'] / 1e6:>11.0f} {row['weight_gb_per_s']:>6.1f} "
                  f"{row['weight_gb_per_s'] / bandwidth:>9.0%} {mib(row):>10} {others:>11}")
        print(f"{'':>5} fp32 rows give the same tokens: {r['same_tokens']}")
    env = {"cpu": cpu_model(), "load_average": load_average(), "torch": torch.__version__,
           "transformers": transformers.__version__, "read_bandwidth_gb_per_s": bandwidth}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"env": env, "args": vars(args), "results": results}, f, indent=2)
    return 0 if all(r["same_tokens"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
