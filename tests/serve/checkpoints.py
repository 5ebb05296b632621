"""Tiny checkpoints for the server tests: random 1-layer x 32 models with a task head, saved
like ``ptmzoo finetune`` saves them (the task in ``ptmzoo.json``)."""

from __future__ import annotations

import torch

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}


def task_checkpoint(directory: str, tokenizer, task: str, labels: list[str], options: dict | None = None,
                    family: str = "bert", heads: tuple[str, ...] = ()) -> str:
    """A randomly initialised ``family`` model fine-tuned (in name) for ``task`` with ``labels``."""
    from ptmzoo.catalog import build_model
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.tasks import task_class, task_options

    torch.manual_seed(0)
    model = build_model(family, {"vocab_size": tokenizer.vocab_size, **TINY}, heads={h: {"kind": h} for h in heads})
    instance = task_class(task)(task_options(task, options), tokenizer, labels, model.backbone.max_length)
    instance.add_head(model)
    save_pretrained(directory, model, tokenizer, extra={"task": instance.meta()})
    return directory
