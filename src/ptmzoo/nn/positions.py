"""Position information shared by the model families.

T5 (Raffel et al., 2020) adds no position embedding to the tokens; instead every attention score
gets a learned scalar per head that depends only on the *bucket* of the relative distance
key - query. Small distances have a bucket each; larger ones share logarithmically wider
buckets up to ``max_distance``, beyond which all distances share the last bucket. Encoders use
both directions (half of the buckets for keys after the query); decoders see only the past.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """Bucket of each relative distance (key position - query position), as in T5."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets  # keys after the query: upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # a causal decoder never sees the future
    exact = num_buckets // 2  # distances below this have a bucket of their own
    # log-spaced buckets for exact <= distance < max_distance (clamped: log(0) is never used)
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    large = (exact + log_ratio * (num_buckets - exact)).long().clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < exact, distance, large)


class RelativePositionBias(nn.Module):
    """T5's learned per-head bias of the attention scores, by relative-position bucket.

    Computed once per forward pass and shared by all layers of a stack (T5 stores it in the
    first layer only)."""

    def __init__(self, num_heads: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """[1, heads, queries, keys] bias for 1-D position tensors."""
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1)[None]


def sinusoidal_positions(length: int, dim: int, start: int = 0) -> torch.Tensor:
    """The fixed position encodings of the original Transformer (Vaswani et al., 2017), [length, dim]:
    PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(pos / 10000^(2i/dim)).
    Wavelengths grow geometrically, so PE(pos + k) is a linear function of PE(pos) for every k."""
    positions = torch.arange(start, start + length, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: dim // 2])
    return table
