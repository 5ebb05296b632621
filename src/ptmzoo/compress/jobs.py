"""Quantization and pruning runs on checkpoints (what ``ptmzoo quantize`` and ``ptmzoo prune`` do).

One-shot methods load a checkpoint, change the model and write a new checkpoint that keeps the
source's task and description (``ptmzoo.json``), plus a ``quantization`` or ``pruning`` entry.
QAT and gradual magnitude pruning fine-tune on a task through ``finetune.run`` (the same loop,
data, heads and metrics as ``ptmzoo finetune``).
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

from ..checkpoint import Pretrained, save_pretrained, write_model_files
from ..errors import UserError
from ..finetune.run import FinetuneConfig, FinetuneRun, run_finetune, task_of
from ..io import atomic_write_json
from ..loading import load
from ..models.model import unwrap
from . import prune as P
from .quantize import prepare_qat, quantize_model
from .teachers import copy_head

# ptmzoo.json entries that describe_model writes anew (the rest of a source's description is kept)
REWRITTEN = ("format", "format_version", "ptmzoo_version", "family", "config", "heads", "helpers", "tokenizer",
             "weights", "delta")


def kept_meta(source: Pretrained) -> dict[str, Any]:
    return {k: v for k, v in source.meta.items() if k not in REWRITTEN}


def open_source(path: str) -> Pretrained:
    source = load(path)
    if "delta" in source.meta:
        raise UserError(f"{path} holds only {source.meta['delta']['strategy']['method']} parameters on a base model; "
                        "compress a whole model (LoRA: fine-tune with --merge-lora and use OUT/merged)")
    if source.meta.get("quantization"):
        raise UserError(f"{path} is quantized already; compress the float model")
    return source


# ---------------------------------------------------------------------------------- quantization
def quantize_checkpoint(path: str, out: str, method: str) -> dict[str, Any]:
    """dynamic-int8 or weight-int8 of a checkpoint into ``out``; returns the ``quantization`` entry."""
    if method == "qat":
        raise UserError("--method qat fine-tunes with fake quantization: give --train and --dev (and the task options)")
    source = open_source(path)
    model = source.model
    entry = quantize_model(model, method)
    save_pretrained(out, model, source.tokenizer, {**kept_meta(source), "quantization": entry})
    return entry


def int8_writer(directory: str, model, tokenizer, extra: dict[str, Any] | None = None) -> None:
    """The Trainer's ``write_model`` during QAT: the model as it will run, with int8 layers."""
    quantized = copy.deepcopy(unwrap(model))
    entry = quantize_model(quantized, "qat")
    write_model_files(directory, quantized, tokenizer, {**(extra or {}), "quantization": entry})


def run_qat(cfg: FinetuneConfig, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """Q8BERT: fine-tune ``cfg.model`` with 8-bit fake quantization; ``out_dir/best`` is int8."""
    source = open_source(cfg.model)
    run = FinetuneRun(cfg, source)
    if (source.task or {}).get("name") == cfg.task and (source.task or {}).get("labels") == run.task.labels:
        copy_head(run.model, source.model, run.task.head_name)  # continue from a fine-tuned model's head
    names = prepare_qat(run.model)
    return run_finetune(cfg, out_dir, progress=progress, run=run, trainer_options={"write_model": int8_writer},
                        meta={"qat": {"layers": len(names)}})


# ---------------------------------------------------------------------------------- pruning
def prune_checkpoint(path: str, out: str, method: str, *, sparsity: float = 0.5, scope: str = "global",
                     include_embeddings: bool = False, fraction: float = 0.5, steps: int = 1,
                     importance_file: str | None = None, batch_size: int = 32, max_examples: int | None = 2000,
                     layers: str = "every-other") -> dict[str, Any]:
    """One-shot pruning of a checkpoint into ``out``; returns the ``pruning`` entry."""
    source = open_source(path)
    model = source.model
    if method == "magnitude":
        entry = P.prune_magnitude(model, sparsity, scope, include_embeddings)
    elif method == "heads":
        if not importance_file:
            raise UserError("head pruning estimates each head's importance on labelled data: give --file F "
                            "(data of the model's task, e.g. its training or dev file)")
        task = task_of(source)
        rows = task.read(importance_file, task.options)
        if max_examples:
            rows = rows[:max_examples]
        samples = task.encode(rows, importance_file)
        batches = [task.collate(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
        model, entry = P.prune_heads(model, batches, task.head_name, fraction, steps)
        entry["importance_examples"] = len(rows)
    elif method == "layers":
        model, entry = P.remove_layers(model, P.parse_layers(layers, model.config.num_layers))
    else:
        raise UserError(f"unknown pruning method '{method}' (choose from magnitude, heads, layers)")
    previous = source.meta.get("pruning")
    if previous and method != "magnitude":  # earlier zeros stay recorded (names of a changed model may differ)
        entry["after"] = {k: v for k, v in previous.items() if k != "parameters"}
    meta = kept_meta(source)
    if method == "magnitude" or not previous:
        meta.pop("pruning", None)
    if method == "magnitude":
        meta["pruning"] = entry
    else:
        meta["structure"] = entry  # shapes changed; no mask to keep
    save_pretrained(out, model, source.tokenizer, meta)
    return entry


def run_gradual_pruning(cfg: FinetuneConfig, out_dir: str, sparsity: float, scope: str = "global",
                        include_embeddings: bool = False, prune_epochs: float = 1.0,
                        progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``cfg.model`` while pruning it gradually to ``sparsity`` over the first
    ``prune_epochs`` epochs (cubic schedule); models are evaluated (and the best kept) only at the
    ends of epochs, when pruning has reached its target."""
    if cfg.evals_per_epoch != 1:
        raise UserError("gradual pruning evaluates at the end of each epoch (pruning ends with an epoch); "
                        "leave evals_per_epoch at 1")
    if prune_epochs <= 0 or prune_epochs > cfg.epochs or prune_epochs != int(prune_epochs):
        raise UserError(f"--prune-epochs must be a whole number of epochs from 1 to --epochs ({cfg.epochs:g})")
    source = open_source(cfg.model)
    run = FinetuneRun(cfg, source)
    if (source.task or {}).get("name") == cfg.task and (source.task or {}).get("labels") == run.task.labels:
        copy_head(run.model, source.model, run.task.head_name)
    names = P.prunable_weights(run.model, include_embeddings)
    steps_per_epoch = math.ceil(len(run.train_samples) / cfg.train.batch_size)
    schedule = P.GradualPruning(run.model, names, sparsity, int(prune_epochs) * steps_per_epoch, scope)
    report = run_finetune(cfg, out_dir, progress=progress, run=run, trainer_options={"after_step": schedule},
                          meta={"pruning": schedule.entry() | {"sparsity": sparsity}})
    best = load(os.path.join(out_dir, "best"))
    report["pruning"]["sparsity"] = round(P.sparsity_of(best.model, names), 6)
    atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    return report
