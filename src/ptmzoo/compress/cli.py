"""``ptmzoo distill``, ``ptmzoo quantize`` and ``ptmzoo prune`` (the work is in the other modules).

The task options (files, columns, max length, epochs, learning rate, batch size, seed, strategy
flags, ``key=value`` overrides) are those of ``ptmzoo finetune``, made by the same function
(``finetune.flags.add_finetune_arguments``), so they are declared once.
"""

from __future__ import annotations

import argparse
import os

from ..errors import UserError

# FinetuneConfig flags that compression runs do not take (their own model flags; one run, from the start)
NOT_FOR_COMPRESSION = ("model", "runs", "from_scratch")


def task_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``ptmzoo finetune``'s task arguments (--train and --dev optional unless ``required``)."""
    from ..finetune.flags import add_finetune_arguments

    add_finetune_arguments(parser, exclude=NOT_FOR_COMPRESSION, files_required=required)


def claim_out(args: argparse.Namespace, trains: bool) -> None:
    """The ``--out`` rule of every verb (``outputs``): a training run writes into OUT as
    ``finetune`` does (``trains``); a one-shot model is assembled beside OUT and renamed into place."""
    from ..outputs import (
        FINETUNE_OUTPUTS,
        PRETRAIN_OUTPUTS,
        claim_output_dir,
        claim_run_dir,
    )

    if not trains:
        claim_output_dir(args.out, args.overwrite)
        return
    writes = PRETRAIN_OUTPUTS if getattr(args, "data", None) else FINETUNE_OUTPUTS
    claim_run_dir(args.out, args.overwrite, writes=writes, resumable=False)


def _out_arguments(parser: argparse.ArgumentParser) -> None:
    from ..outputs import OVERWRITE_HELP

    parser.add_argument("--out", required=True, help="directory to write (refused if it exists and is not empty)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


# ---------------------------------------------------------------------------------- distill
DISTILL_DESCRIPTION = ("Knowledge distillation on a task (--train/--dev, the task options of finetune) or on "
                       "pre-training shards (--data). Overrides: train.KEY=V, distill.KEY=V, student.KEY=V (a preset "
                       "student's model settings).")
QUANTIZE_DESCRIPTION = ("dynamic-int8 (int8 GEMM, activations quantized per call; CPU inference), weight-int8 (int8 "
                        "weights, float activations; batch-1 decoding), qat (Q8BERT: fine-tune with fake "
                        "quantization, needs --train/--dev).")
PRUNE_DESCRIPTION = ("magnitude: unstructured, one-shot (or gradual while fine-tuning with --train/--dev); heads: by "
                     "importance on --file (Michel et al.); layers: remove layers (every other after LayerDrop "
                     "training).")


def distill_arguments(p: argparse.ArgumentParser) -> None:
    from .distill import METHODS

    p.add_argument("--teacher", action="append", required=True,
                   help="fine-tuned teacher (repeat for an ensemble); with --data a pre-trained MLM model")
    p.add_argument("--student", help="a preset, a checkpoint (e.g. from `ptmzoo init`), or nothing: the teacher's "
                                     "every other layer (DistilBERT's initialisation)")
    p.add_argument("--student-layers", help="with no --student: teacher layers to copy (0,2) or how many (2)")
    p.add_argument("--method", dest="compression", default="kd", choices=METHODS)
    p.add_argument("--data", help="pre-training shards (general distillation: distilbert, tinybert, minilm)")
    p.add_argument("--seq-len", type=int, help="--data: sequence length (default 128)")
    p.add_argument("--steps", type=int, help="--data: optimizer steps (default 1000)")
    g = p.add_argument_group("losses (default: the method's)")
    g.add_argument("--temperature", type=float, help="T of the soft targets (kd 2, pkd 5, tinybert/minilm 1)")
    g.add_argument("--alpha", type=float, help="weight of the soft loss; 1 - alpha goes to the gold labels")
    g.add_argument("--beta", type=float, help="pkd: weight of the patient loss (100)")
    g.add_argument("--layer-map", choices=["uniform", "skip", "last"], help="teacher layer of each student layer")
    g.add_argument("--relation-heads", type=int, help="minilm: relation heads (default: the teacher's heads)")
    g.add_argument("--intermediate-epochs", type=float, help="tinybert/minilm: epochs of the intermediate stage")
    g.add_argument("--replace-rate", type=float, help="theseus: replacement probability (linear: its start)")
    g.add_argument("--replace-schedule", choices=["constant", "linear"], help="theseus: rate schedule")
    g.add_argument("--successor-epochs", type=float, help="theseus: epochs of the successor alone")
    g.add_argument("--augment", type=int, help="tinybert, bilstm: augmented copies per training example")
    g.add_argument("--augment-model", help="tinybert: MLM checkpoint proposing words (default: the teacher)")
    g.add_argument("--augment-prob", type=float, help="per-word probability (tinybert 0.4; bilstm 0.1)")
    g.add_argument("--pos-lexicon", help="bilstm: POS-tagged corpus (CoNLL 'word POS' lines or word/TAG text)")
    _out_arguments(p)
    task_arguments(p)


DISTILL_OPTIONS = ("temperature", "alpha", "beta", "layer_map", "relation_heads", "intermediate_epochs",
                   "replace_rate", "replace_schedule", "successor_epochs", "augment", "augment_model", "augment_prob",
                   "pos_lexicon")


def _student_layers(text: str | None) -> dict:
    if not text:
        return {}
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--student-layers {text!r}: give layer numbers (0,2) or a count (2)") from None
    return {"student_layers": values} if "," in text else {"student_num_layers": values[0]}


def cmd_distill(args) -> None:
    from ..finetune.flags import finetune_settings
    from ..train.distributed import teardown
    from .distill import distill_config, run_distill

    claim_out(args, trains=True)
    options = {name: getattr(args, name) for name in DISTILL_OPTIONS if getattr(args, name) is not None}
    data = {"teachers": args.teacher, "student": args.student, **_student_layers(args.student_layers),
            "data": args.data, "seq_len": args.seq_len, "distill": {"method": args.compression, **options}}
    if args.data:
        train = {"max_steps": args.steps or 1000, "batch_size": args.batch_size or 32, "lr": args.lr or 5e-4,
                 "warmup_ratio": 0.05}
        if args.seed is not None:
            train["seed"] = args.seed
        data["train"] = train
    elif args.train_file and args.dev_file:
        data["finetune"] = {**finetune_settings(args), "model": args.student or args.teacher[0]}
    cfg = distill_config(data, list(args.overrides))
    try:
        report = run_distill(cfg, args.out, progress=not args.no_progress)
    finally:
        teardown()
    info = report["distillation"]
    sizes = f"{report.get('student_parameters', info.get('student_parameters', 0)):,} parameters (teacher " \
            f"{info['teacher_parameters']:,})"
    if "dev" in report:
        test = report.get("test")
        print(f"{cfg.distill.method}: student {sizes}; dev {_shown(report['dev'])}" +
              (f"; test accuracy {test['accuracy']:.4f}" if test and "accuracy" in test else ""))
        print(f"best model -> {os.path.join(args.out, 'best')}; metrics -> {os.path.join(args.out, 'metrics.json')}")
    else:
        print(f"{cfg.distill.method} (general): student {sizes}, {report['steps']} steps -> "
              f"{os.path.join(args.out, 'final')}")


# ---------------------------------------------------------------------------------- quantize
def quantize_arguments(p: argparse.ArgumentParser) -> None:
    from .quantize import METHODS

    p.add_argument("model", metavar="MODEL", help="checkpoint (qat: a pre-trained or fine-tuned one)")
    p.add_argument("--method", dest="compression", required=True, choices=METHODS)
    _out_arguments(p)
    task_arguments(p)


def cmd_quantize(args) -> None:
    from .jobs import quantize_checkpoint, run_qat

    claim_out(args, trains=args.compression == "qat")
    if args.compression != "qat":
        entry = quantize_checkpoint(args.model, args.out, args.compression)
        print(f"{args.compression}: {len(entry['modules'])} Linear layers in int8 -> {args.out}")
        return
    report = _finetune_job(args, run_qat)
    print(f"qat: dev {_shown(report['dev'])}")
    print(f"int8 model -> {os.path.join(args.out, 'best')}")


def _shown(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _finetune_job(args, job, **kwargs):
    from ..config import apply_overrides
    from ..finetune import FinetuneConfig
    from ..finetune.flags import finetune_settings
    from ..train.distributed import teardown

    if not (args.train_file and args.dev_file):
        raise UserError(f"--method {args.compression} fine-tunes: give --train and --dev (and the task options)")
    cfg = FinetuneConfig.from_dict(apply_overrides({**finetune_settings(args), "model": args.model},
                                                   list(args.overrides)))
    try:
        return job(cfg, args.out, progress=not args.no_progress, **kwargs)
    finally:
        teardown()


# ---------------------------------------------------------------------------------- prune
def prune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="checkpoint (heads: a fine-tuned one)")
    p.add_argument("--method", dest="compression", required=True, choices=["magnitude", "heads", "layers"])
    p.add_argument("--sparsity", type=float, default=0.5, help="magnitude: share of weights set to zero")
    p.add_argument("--scope", choices=["global", "layer"], default="global",
                   help="magnitude: one threshold for all weights, or one per weight matrix")
    p.add_argument("--include-embeddings", action="store_true", help="magnitude: prune the token embeddings too")
    p.add_argument("--prune-epochs", type=float, default=1.0, help="magnitude with --train: epochs of the schedule")
    p.add_argument("--fraction", type=float, default=0.5, help="heads: share of all heads removed")
    p.add_argument("--head-steps", type=int, default=1, help="heads: rounds (importance re-estimated each round)")
    p.add_argument("--file", help="heads: labelled data of the model's task for the importance")
    p.add_argument("--max-examples", type=int, default=2000, help="heads: examples of --file used")
    p.add_argument("--keep-layers", default="every-other", help="layers: 'every-other' or the layers to keep (0,2)")
    _out_arguments(p)
    task_arguments(p)


def cmd_prune(args) -> None:
    from .jobs import prune_checkpoint, run_gradual_pruning

    claim_out(args, trains=args.compression == "magnitude" and bool(args.train_file))
    if args.compression == "magnitude" and args.train_file:
        report = _finetune_job(args, run_gradual_pruning, sparsity=args.sparsity, scope=args.scope,
                               include_embeddings=args.include_embeddings, prune_epochs=args.prune_epochs)
        print(f"gradual magnitude pruning to {report['pruning']['sparsity']:.1%}: dev {_shown(report['dev'])}")
        print(f"best model -> {os.path.join(args.out, 'best')}")
        return
    entry = prune_checkpoint(args.model, args.out, args.compression, sparsity=args.sparsity, scope=args.scope,
                             include_embeddings=args.include_embeddings, fraction=args.fraction,
                             steps=args.head_steps, importance_file=args.file, batch_size=args.batch_size or 32,
                             max_examples=args.max_examples, layers=args.keep_layers)
    if args.compression == "magnitude":
        what = f"{entry['sparsity']:.1%} of {len(entry['parameters'])} weight matrices zero ({entry['scope']})"
    elif args.compression == "heads":
        what = f"{len(entry['removed_heads'])} heads removed ({entry['fraction']:.1%}); heads per layer {entry['layer_heads']}"
    else:
        what = f"kept layers {entry['kept_layers']} of {entry['of']}"
    print(f"{args.compression}: {what} -> {args.out}")
