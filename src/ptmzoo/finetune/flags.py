"""Command-line flags of ``ptmzoo finetune`` made from its configs -- the task options of every
task, the transfer strategy -- and the ``ptmzoo transfer`` verb.

Every flag is also a config field (``options.*``, ``strategy.*``, ``patience``, ``runs``,
``train.schedule``), so the same settings can be written as ``key=value`` overrides or in a
transfer recipe. The flags default to "not given": the configs supply the values.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from typing import Any

from ..config_flags import (
    add_config_flags,
    add_field_flag,
    flag_fields,
    flag_of,
    given_values,
)
from ..errors import UserError


# ------------------------------------------------------------------------------------ task options
def task_option_fields() -> dict[type, list[dataclasses.Field]]:
    """The flag fields of every task's options, once each, by the options class that declares them
    (a field shared by several tasks is declared once, in a class they all extend)."""
    from ..tasks import TASKS

    declared: dict[type, list[dataclasses.Field]] = {}
    seen: set[str] = set()
    for task in TASKS.values():
        for field in flag_fields(task.Options):
            if field.name not in seen:
                seen.add(field.name)
                declared.setdefault(_declaring_class(task.Options, field.name), []).append(field)
    return declared


def _declaring_class(cls: type, name: str) -> type:
    return next(c for c in reversed(cls.__mro__) if name in c.__dict__.get("__annotations__", {}))


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """One group of flags per options class, titled by the tasks that read it (the widest first)."""
    from ..tasks import tasks_using

    groups = [(cls, fields, tasks_using(fields[0].name)) for cls, fields in task_option_fields().items()]
    for cls, fields, users in sorted(groups, key=lambda group: -len(group[2])):
        group = parser.add_argument_group(f"{_title(cls)} (--task {', '.join(users)})")
        for field in fields:
            add_field_flag(group, cls, field, given_only=True)


def _title(cls: type) -> str:
    """The docstring's opening words, up to its first colon or full stop."""
    text = " ".join((cls.__doc__ or cls.__name__).split())
    return re.split(r":|\. ", text, maxsplit=1)[0].rstrip(".")


def task_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The task options given on the command line; a flag of other tasks is refused, naming them."""
    from ..tasks import task_class, tasks_using

    known = task_class(args.task).Options.field_types()
    fields = [f for declared in task_option_fields().values() for f in declared]
    given = given_values(args, fields)
    for field in fields:
        if field.name in given and field.name not in known:
            raise UserError(f"{flag_of(field)} is a flag of --task {', '.join(tasks_using(field.name))}; "
                            f"--task {args.task} does not use it")
    return given


# ------------------------------------------------------------------------------ transfer strategy
def add_strategy_arguments(parser: argparse.ArgumentParser) -> None:
    from .strategies import StrategyConfig

    group = parser.add_argument_group("transfer strategy")
    add_config_flags(group, StrategyConfig, given_only=True)
    group.add_argument("--slanted-triangular", action="store_true",
                       help="ULMFiT's learning-rate schedule (train.schedule=slanted_triangular; "
                            "train.stlr_cut_frac, train.stlr_ratio)")


def strategy_settings(args: argparse.Namespace, train: dict[str, Any]) -> dict[str, Any]:
    """The FinetuneConfig entries the strategy flags set (only those given); ``train`` settings in place."""
    from .strategies import StrategyConfig

    if args.slanted_triangular:
        train["schedule"] = "slanted_triangular"
    return {"strategy": given_values(args, flag_fields(StrategyConfig))}


def add_finetune_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = (),
                           files_required: bool = True) -> None:
    """``ptmzoo finetune``'s settings (all but --out and --resume): the FinetuneConfig flags less
    ``exclude``, --lr, --batch-size, --seed, --no-progress, ``key=value`` overrides, the task
    options and the strategy flags. The compression verbs take them too (``files_required``:
    --train and --dev, which distillation on shards does without)."""
    from .lr import RULE
    from .run import FinetuneConfig, finetune_defaults

    names = [f.name for f in flag_fields(FinetuneConfig) if f.name not in exclude]
    add_config_flags(parser, FinetuneConfig, names)  # --model, --task, --train, --dev, --epochs, --metric ...
    if not files_required:
        for action in parser._actions:
            if action.dest in ("train_file", "dev_file"):
                action.required = False
    train = finetune_defaults()
    parser.add_argument("--lr", type=learning_rate, metavar="LR|auto",
                        help=f"peak learning rate (train.lr), or auto: fine-tune once per rate of --lr-grid and keep "
                             f"the best on the dev set (default: by the model's width, {RULE})")
    parser.add_argument("--batch-size", type=int,
                        help=f"sequences per optimizer step (train.batch_size; default: {train.batch_size})")
    parser.add_argument("--seed", type=int, help=f"seed of the head, the data order and dropout "
                                                 f"(train.seed; default: {train.seed})")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of train settings, e.g. train.warmup_ratio=0")
    add_task_arguments(parser)
    add_strategy_arguments(parser)


def learning_rate(text: str) -> float | str:
    """``--lr``: a number, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a learning rate nor auto") from None


def finetune_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The FinetuneConfig entries that the flags of ``add_finetune_arguments`` gave (overrides not applied)."""
    from .run import FinetuneConfig, finetune_defaults

    train = finetune_defaults().to_dict()
    del train["lr"]  # not given: the width rule (lr_choice)
    settings: dict[str, Any] = {}
    if args.lr == "auto":
        settings["lr_choice"] = "auto"
    elif args.lr is not None:  # 0 too: validated, not ignored
        train["lr"] = args.lr
    if args.batch_size is not None:
        train["batch_size"] = args.batch_size
    if args.seed is not None:
        train["seed"] = args.seed
    return {
        **settings,
        **given_values(args, flag_fields(FinetuneConfig)),  # model, files, task, format, epochs ...
        "options": task_option_values(args),
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
def add_transfer_arguments(tr: argparse.ArgumentParser) -> None:
    from ..outputs import OVERWRITE_HELP

    tr.add_argument("--recipe", required=True, help="YAML with model: and stages: (two-stage) or tasks: (multi-task)")
    tr.add_argument("--out", required=True, help="run directory; stage N goes to OUT/N_NAME")
    tr.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("overrides", nargs="*", help="key=value overrides of the recipe, e.g. model=runs/bert")


def cmd_transfer(args) -> None:
    from ..config import apply_overrides, load_yaml
    from ..outputs import claim_run_dir
    from ..train.distributed import teardown
    from .experiments import TransferRecipe, run_transfer

    data = apply_overrides(load_yaml(args.recipe), list(args.overrides))
    claim_run_dir(args.out, args.overwrite, resumable=False)
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
