"""Shared building blocks: attention with mask builders, feed-forward layers, initialisation."""

from .attention import (
    Attention,
    AttentionMask,
    banded_mask,
    causal_mask,
    document_mask,
    padding_mask,
)
from .ffn import FeedForward, activation
from .init import init_transformer_weights

__all__ = [
    "AttentionMask",
    "FeedForward",
    "Attention",
    "activation",
    "banded_mask",
    "causal_mask",
    "document_mask",
    "init_transformer_weights",
    "padding_mask",
]
