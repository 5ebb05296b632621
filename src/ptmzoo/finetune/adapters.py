"""Houlsby adapters (Houlsby et al., 2019): a small bottleneck with a residual connection after the
attention output projection and after the feed-forward network of every layer.

``adapter(h) = h + up(act(down(h)))`` with ``up`` initialised to zero, so the adapted model starts
as exactly the base model (the "near-identity" initialisation the paper asks for) and only the
adapters, the LayerNorms and the task head are trained.

The adapter sits inside an ``nn.Linear`` subclass that keeps the projection's own weight and bias,
so base parameter names are unchanged and a base checkpoint loads into an adapted model as is.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..nn.ffn import activation
from .lora import replace_module

# The projections whose outputs are adapted: attention output and FFN output (BERT and GPT-2 alike).
ADAPTER_SITES = ("attention.out", "ffn.down")


class Adapter(nn.Module):
    def __init__(self, hidden_size: int, size: int, act: str = "gelu", init_std: float = 1e-3):
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.act = activation(act)
        self.up = nn.Linear(size, hidden_size)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class AdaptedLinear(nn.Linear):
    """A projection followed by an adapter; same weight and bias tensors as the base layer."""

    def __init__(self, base: nn.Linear, size: int):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight, self.bias = base.weight, base.bias
        self.adapter = Adapter(base.out_features, size).to(base.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(super().forward(x))


def add_adapters(module: nn.Module, size: int) -> list[str]:
    """Put an adapter after every attention output and FFN output projection; returns their names."""
    if size < 1:
        raise UserError("adapter size must be at least 1")
    chosen = [name for name, m in module.named_modules()
              if type(m) is nn.Linear and name.endswith(ADAPTER_SITES)]
    if not chosen:
        raise UserError("the model has no attention/FFN projections to put adapters after")
    for name in chosen:
        replace_module(module, name, AdaptedLinear(module.get_submodule(name), size))
    return chosen
