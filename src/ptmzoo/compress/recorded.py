"""What a compressed checkpoint records in ``ptmzoo.json``, and what that means for whoever loads,
trains or converts it -- the one place the loader and the training jobs ask.

Each entry kind says how the model is rebuilt before its weights load (int8 layers), whether the
model may be trained further, and what training must keep (a pruned model's zeros: Gordon et al.
pre-train and fine-tune a pruned BERT with its mask fixed). A new kind of compression that changes
the stored model adds one class here; ``loading``, ``train.pretrain`` and ``finetune.run`` do not
change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from ..errors import UserError
from .masks import SparsityMasks
from .quantize import apply_quantization


class RecordedEntry:
    key: ClassVar[str]

    @staticmethod
    def rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
        """Change the freshly built model so that the checkpoint's weights fit it."""

    @staticmethod
    def training_hook(model: nn.Module, entry: dict[str, Any], source: str) -> Callable[[int], None] | None:
        """Called after each optimizer step while training from this checkpoint (None: nothing), or
        a UserError when it cannot be trained."""
        return None


class Quantization(RecordedEntry):
    key = "quantization"
    rebuild = staticmethod(apply_quantization)

    @staticmethod
    def training_hook(model, entry, source):
        raise UserError(f"{source} is quantized ({entry.get('method')}); int8 weights cannot be trained: fine-tune "
                        "the float model, or use `ptmzoo quantize --method qat`")


class Pruning(RecordedEntry):
    key = "pruning"

    @staticmethod
    def training_hook(model, entry, source):
        return SparsityMasks.from_zeros(model, entry["parameters"]).apply


RECORDED: dict[str, type[RecordedEntry]] = {kind.key: kind for kind in (Quantization, Pruning)}
# also kept by `convert` (provenance, no effect on loading or training)
KEPT_BY_CONVERT = (*RECORDED, "structure", "distillation")


def rebuild(model: nn.Module, meta: dict[str, Any]) -> nn.Module:
    for key, kind in RECORDED.items():
        if meta.get(key):
            kind.rebuild(model, meta[key])
    return model


def training_constraints(model: nn.Module, meta: dict[str, Any],
                         source: str) -> tuple[Callable[[int], None] | None, dict[str, Any]]:
    """For training ``model`` initialised from a checkpoint with ``meta``: the after-step hook
    that keeps what the checkpoint's compression requires, and the entries its outputs carry on."""
    hooks, carried = [], {}
    for key, kind in RECORDED.items():
        if meta.get(key):
            hook = kind.training_hook(model, meta[key], source)
            if hook is not None:
                hooks.append(hook)
                carried[key] = meta[key]
    if not hooks:
        return None, carried

    def after_step(step: int | None = None) -> None:
        for hook in hooks:
            hook(step)

    return after_step, carried
