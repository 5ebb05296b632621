"""Position-wise feed-forward network and the activations the model families use."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# BERT uses the exact (erf) GELU, GPT-2 the tanh approximation ("gelu_new" in transformers).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "gelu_new": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})") from None


class FeedForward(nn.Module):
    """Linear -> activation -> Linear. Dropout on the output is the caller's (residual) job;
    ``dropout`` > 0 also drops the inner activations (Transformer-XL, XLNet)."""

    def __init__(self, hidden_size: int, inner_size: int, act: str, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(hidden_size, inner_size, bias=bias)
        self.act = activation(act)
        self.inner_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.down = nn.Linear(inner_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.inner_dropout(self.act(self.up(x))))

