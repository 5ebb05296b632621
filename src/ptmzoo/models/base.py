"""What every backbone returns, and the small interface the heads rely on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config
from ..errors import UserError


@dataclass
class TransformerConfig(Config):
    """Fields every Transformer family has; family configs add theirs and change defaults."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        if self.hidden_size % self.num_heads:
            raise UserError(f"model.hidden_size ({self.hidden_size}) must be divisible by "
                            f"model.num_heads ({self.num_heads})")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"model.{name} must be in [0, 1)")


@dataclass
class BackboneOutput:
    last_hidden_state: torch.Tensor  # [batch, seq, hidden]
    pooler_output: torch.Tensor | None = None  # [batch, hidden], encoders with a pooler
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + every layer, on request


@dataclass
class ModelOutput(BackboneOutput):
    logits: torch.Tensor | None = None  # the primary (first) head's logits
    head_logits: dict[str, torch.Tensor] = field(default_factory=dict)  # every head, by name
    # Training (targets given): each head's summed loss, and the sum of the heads' mean losses.
    loss_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    loss: torch.Tensor | None = None


class Backbone(nn.Module):
    """Base class: token ids (and masks, segments) in, hidden states out. Never a loss."""

    causal: bool = False  # decoders attend left to right
    config_class: type

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def max_input_length(self) -> int | None:
        """The longest input its position table covers (None: relative positions, any length)."""
        return self.config.max_position_embeddings

    @property
    def input_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def has_pooler(self) -> bool:
        return False
