"""Sparsity masks that stay put: once a weight is pruned it is zero after every optimizer step.

A pruned checkpoint records the pruned parameters in its ``ptmzoo.json`` (``pruning``); whatever
trains it further (``ptmzoo finetune``, ``distill``, gradual pruning) builds a ``SparsityMasks``
from the zeros of those parameters and calls ``apply`` after each optimizer step (the Trainer's
``after_step``), so AdamW's momentum cannot move a pruned weight off zero.
"""

from __future__ import annotations

import torch
from torch import nn


class SparsityMasks:
    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        self.params = dict(model.named_parameters())
        missing = sorted(set(masks) - set(self.params))
        if missing:
            raise KeyError(f"no parameter {missing[0]} to mask")
        self.masks = masks  # name -> bool tensor, True = kept

    @classmethod
    def from_zeros(cls, model: nn.Module, names: list[str]) -> SparsityMasks:
        """Masks keeping the non-zero entries of the named parameters (a pruned checkpoint's)."""
        params = dict(model.named_parameters())
        return cls(model, {name: params[name].detach() != 0 for name in names if name in params})

    @torch.no_grad()
    def apply(self, step: int | None = None) -> None:
        """Zero the pruned entries (usable as the Trainer's ``after_step``)."""
        for name, mask in self.masks.items():
            param = self.params[name]
            param.mul_(mask.to(device=param.device, dtype=param.dtype))

    def sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1 - sum(int(m.sum()) for m in self.masks.values()) / max(1, total)
