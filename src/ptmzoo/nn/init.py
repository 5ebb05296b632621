"""Weight initialisation shared by the Transformer families (BERT and GPT-2 use the same rule)."""

from __future__ import annotations

from torch import nn


def init_transformer_weights(module: nn.Module, std: float) -> None:
    """Normal(0, std) for linear and embedding weights, zero biases, unit LayerNorm."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.padding_idx is not None:
                sub.weight.data[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
