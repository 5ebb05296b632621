"""LoRA (Hu et al., 2021): a frozen weight W plus a trainable low-rank update B·A.

``y = x Wᵀ + b + (alpha / rank) · dropout(x) Aᵀ Bᵀ`` with A [rank, in] random and B [out, rank]
zero, so a model with LoRA added computes exactly what the base model computes until B moves.
``merge_lora`` folds the update into W and puts plain ``nn.Linear`` layers back: the result is an
ordinary checkpoint with no extra cost at inference.

A LoRA layer *is* an ``nn.Linear`` holding the base layer's own weight and bias tensors, so the
base parameter names (``...attention.qkv.weight``) do not change and a base checkpoint's state
dict loads into a LoRA model as is; the update adds ``lora_a`` and ``lora_b`` beside them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


class LoRALinear(nn.Linear):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight, self.bias = base.weight, base.bias  # share, do not copy
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_dropout = nn.Dropout(dropout)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_b @ self.lora_a) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b) * self.scaling
        return F.linear(x, self.weight, self.bias) + update


def replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name`` inside ``root``."""
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


# ``qkv`` names the attention's query/key/value projections whether fused (BERT, GPT) or not (``q`` and
# ``kv``: the encoder-decoders' attention)
TARGET_ALIASES = {"qkv": ("qkv", "q", "kv")}


def add_lora(module: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Wrap every ``nn.Linear`` whose name ends with one of ``targets`` (e.g. qkv, out, up, down);
    returns the wrapped names."""
    if rank < 1:
        raise UserError("LoRA rank must be at least 1")
    names = {name for target in targets for name in TARGET_ALIASES.get(target, (target,))}
    chosen = [name for name, m in module.named_modules()
              if type(m) is nn.Linear and name.rsplit(".", 1)[-1] in names]
    if not chosen:
        raise UserError(f"no linear layer named {', '.join(targets)} in the model; LoRA targets are module "
                        "names such as qkv, out, up, down")
    for name in chosen:
        replace_module(module, name, LoRALinear(module.get_submodule(name), rank, alpha, dropout))
    return chosen


@torch.no_grad()
def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight and restore plain ``nn.Linear`` layers (in place)."""
    for name, m in list(module.named_modules()):
        if isinstance(m, LoRALinear):
            m.weight += m.delta_weight().to(m.weight.dtype)
            plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                              device=m.weight.device, dtype=m.weight.dtype)
            plain.weight, plain.bias = m.weight, m.bias
            replace_module(module, name, plain)
    return module
