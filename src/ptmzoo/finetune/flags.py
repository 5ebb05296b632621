"""Command-line flags of the transfer strategies (``ptmzoo finetune``) and the ``ptmzoo transfer`` verb.

Every flag is also a config field (``strategy.*``, ``patience``, ``runs``, ``train.schedule``), so
the same settings can be written as ``key=value`` overrides or in a transfer recipe.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

METHODS = ["full", "frozen", "adapters", "lora"]
LAYERS = ["last", "sum", "concat", "scalar_mix"]


def add_strategy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("transfer strategy")
    group.add_argument("--strategy", choices=METHODS, help="what is trained: everything (full, default), only the "
                       "head (frozen: feature extraction), adapters + LayerNorms + head, or LoRA + head")
    group.add_argument("--layers", choices=LAYERS, help="hidden states the head reads: last (default), sum or "
                       "concat of the top --top-k layers, or ELMo's learned scalar_mix of all layers")
    group.add_argument("--top-k", type=int, help="layers summed or concatenated (default 4)")
    group.add_argument("--discriminative-lr", type=float, metavar="DECAY",
                       help="ULMFiT: each lower layer learns DECAY times slower (2.6 in the paper)")
    group.add_argument("--gradual-unfreezing", action="store_true",
                       help="ULMFiT: train the top layer group first, unfreeze one more per epoch")
    group.add_argument("--slanted-triangular", action="store_true",
                       help="ULMFiT's learning-rate schedule (train.stlr_cut_frac, train.stlr_ratio)")
    group.add_argument("--adapter-size", type=int, help="adapter bottleneck width (default 64)")
    group.add_argument("--lora-rank", type=int, help="LoRA rank (default 8)")
    group.add_argument("--lora-alpha", type=float, help="LoRA scale alpha; the update is scaled by alpha/rank")
    group.add_argument("--lora-dropout", type=float, help="dropout on the LoRA input (default 0)")
    group.add_argument("--lora-targets", help="comma-separated linear layers to adapt (default qkv,out; also up,down)")
    group.add_argument("--merge-lora", action="store_true", help="also write OUT/merged: a normal checkpoint")
    group.add_argument("--patience", type=int, help="early stopping: evaluations without a better dev metric")
    group.add_argument("--runs", type=int, help="K runs with seeds seed..seed+K-1; reports mean ± std")


def strategy_settings(args: argparse.Namespace, train: dict[str, Any]) -> dict[str, Any]:
    """The FinetuneConfig entries the strategy flags set (only those given); ``train`` settings in place."""
    names = {"strategy": "method", "layers": "layers", "top_k": "top_k", "discriminative_lr": "discriminative_decay",
             "adapter_size": "adapter_size", "lora_rank": "lora_rank", "lora_alpha": "lora_alpha",
             "lora_dropout": "lora_dropout"}
    strategy = {key: getattr(args, flag) for flag, key in names.items() if getattr(args, flag) is not None}
    if args.lora_targets:
        strategy["lora_targets"] = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    if args.gradual_unfreezing:
        strategy["gradual_unfreezing"] = True
    if args.merge_lora:
        strategy["merge_lora"] = True
    if args.slanted_triangular:
        train["schedule"] = "slanted_triangular"
    settings: dict[str, Any] = {"strategy": strategy}
    if args.patience is not None:
        settings["patience"] = args.patience
    if args.runs is not None:
        settings["runs"] = args.runs
    return settings


def finetune_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The FinetuneConfig fields that ``ptmzoo finetune``'s flags give (overrides not applied)."""
    from ..tasks import TaskOptions
    from .run import finetune_defaults

    train = finetune_defaults().to_dict()
    if args.lr:
        train["lr"] = args.lr
    if args.batch_size:
        train["batch_size"] = args.batch_size
    if args.seed is not None:
        train["seed"] = args.seed
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    return {
        "model": getattr(args, "model", None), "train_file": args.train_file, "dev_file": args.dev_file,
        "test_file": args.test_file, "task": args.task, "format": args.format, "epochs": args.epochs,
        "metric": args.metric, "columns": columns,
        "max_train_examples": args.max_train_examples, "from_scratch": args.from_scratch,
        "options": {name: getattr(args, name) for name in TaskOptions.field_types() if hasattr(args, name)},
        "train": train,
        **strategy_settings(args, train),
    }


def describe(report: dict[str, Any]) -> str:
    """One line on what a run trained."""
    if "trainable_parameters" not in report:
        return ""
    return (f"{report['method']}: {report['trainable_parameters']:,} of {report['total_parameters']:,} parameters "
            f"trained ({report['trainable_percent']}%)")


def summary_line(summary: dict[str, Any], split: str = "dev") -> str:
    """``accuracy 0.8123 ± 0.0041, ...`` for a run_seeds summary."""
    return ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary.get(split, {}).items()
                     if k != "examples")


# ------------------------------------------------------------------------------ ptmzoo transfer
def add_transfer_parser(verbs, common) -> None:
    tr = verbs.add_parser("transfer", parents=[common],
                          help="transfer recipes: two stages (continued pre-training or an intermediate task, "
                               "then the target task) or multi-task learning (MT-DNN)")
    tr.add_argument("--recipe", required=True, help="YAML with model: and stages: (two-stage) or tasks: (multi-task)")
    tr.add_argument("--out", required=True, help="run directory; stage N goes to OUT/N_NAME")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("overrides", nargs="*", help="key=value overrides of the recipe, e.g. model=runs/bert")


def cmd_transfer(args) -> None:
    from ..config import apply_overrides, load_yaml
    from ..train.distributed import teardown
    from .experiments import TransferRecipe, run_transfer

    data = apply_overrides(load_yaml(args.recipe), list(args.overrides))
    if "tasks" in data:  # a multi-task recipe
        return _multitask(data, args)
    recipe = TransferRecipe.from_dict(data)
    try:
        report = run_transfer(recipe, args.out, progress=not args.no_progress)
        for stage in report["stages"]:
            result = stage.get("report") or {}
            dev = result.get("dev") or {}
            shown = summary_line(result) if "per_run" in result else ", ".join(
                f"{k} {v:.4f}" for k, v in dev.items() if isinstance(v, float))
            print(f"{stage['name']} ({stage['kind']}) -> {stage['out']}" + (f": dev {shown}" if shown else ""))
        print(f"final model -> {report['final_model']}; metrics -> {os.path.join(args.out, 'metrics.json')}")
    finally:
        teardown()


def _multitask(data: dict[str, Any], args) -> None:
    from ..train.distributed import teardown
    from .multitask import MultiTaskConfig, run_multitask

    cfg = MultiTaskConfig.from_dict(data)
    try:
        report = run_multitask(cfg, args.out, progress=not args.no_progress)
        print(describe(report))
        print("multi-task dev: " + ", ".join(f"{k} {v:.4f}" for k, v in report["dev"].items()
                                             if isinstance(v, float) and not k.endswith("eval_loss")))
        for name, dev in (report.get("finetuned") or {}).items():
            print(f"{name} fine-tuned alone: " + ", ".join(f"{k} {v:.4f}" for k, v in dev.items()
                                                           if isinstance(v, float)))
        print(f"shared model -> {os.path.join(args.out, 'best')}; metrics -> {os.path.join(args.out, 'metrics.json')}")
    finally:
        teardown()
