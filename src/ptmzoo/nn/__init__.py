"""Shared building blocks: attention with mask builders, feed-forward layers, initialisation."""

from .attention import AttentionMask, SelfAttention, causal_mask, document_mask, padding_mask
from .ffn import FeedForward, activation
from .init import init_transformer_weights

__all__ = [
    "AttentionMask",
    "SelfAttention",
    "causal_mask",
    "document_mask",
    "padding_mask",
    "FeedForward",
    "activation",
    "init_transformer_weights",
]
