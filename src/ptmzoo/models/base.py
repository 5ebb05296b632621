"""What every backbone returns, and the small interface the heads rely on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


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
    def input_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def has_pooler(self) -> bool:
        return False
