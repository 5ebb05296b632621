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


# ---- Transformer-XL / XLNet: sinusoidal encodings of relative distances -------------------------
def relative_distances(queries: int, keys: int, clamp: int = -1, device=None) -> torch.Tensor:
    """The distances (query position - key position) that ``relative_shift`` reads, largest first:
    ``keys`` down to ``-queries + 1`` (``keys + queries`` of them) for queries that are the last
    ``queries`` of the ``keys`` positions (a memory comes first). ``clamp`` > 0: distances beyond
    it share the encoding of ``±clamp``."""
    distances = torch.arange(keys, -queries, -1, device=device, dtype=torch.float32)
    return distances.clamp(-clamp, clamp) if clamp > 0 else distances


def relative_sinusoids(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """R_d of Transformer-XL (Dai et al., 2019) for each distance d, [n, dim]: [sin(d w), cos(d w)]
    with w_k = 1 / 10000^(2k/dim), sines first then cosines (not interleaved, as in both papers'
    code)."""
    frequencies = 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float32, device=distances.device) / dim)
    angles = distances.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def relative_shift(scores: torch.Tensor, keys: int) -> torch.Tensor:
    """Transformer-XL's relative shift: ``scores`` [..., Lq, keys + Lq] hold query i's score
    against each distance of ``relative_distances(Lq, keys)``; the result [..., Lq, keys] holds it
    against each key j, at distance (keys - Lq + i) - j. Done by viewing the rows with one column
    less -- each row starts one element later than the one before -- instead of a gather."""
    *lead, queries, width = scores.shape
    shifted = scores.reshape(*lead, width, queries)[..., 1:, :].reshape(*lead, queries, width - 1)
    return shifted[..., :keys]


# ---- NEZHA: functional relative positions --------------------------------------------------------
def nezha_relative_positions(queries: int, keys: int, dim: int, max_distance: int, device=None) -> torch.Tensor:
    """NEZHA's fixed relative-position vectors a_ij (Wei et al., 2019), [queries, keys, dim]: the
    distance j - i clipped to ±``max_distance``, shifted to an index m in [0, 2 max_distance], and
    a_ij[2k] = sin(m / 10000^(2k/dim)), a_ij[2k+1] = cos(m / 10000^(2k/dim)) -- the index, not the
    signed distance, as in the released code (and transformers' NezhaModel)."""
    distance = torch.arange(keys, device=device)[None, :] - torch.arange(queries, device=device)[:, None]
    index = distance.clamp(-max_distance, max_distance) + max_distance
    table = sinusoidal_positions(2 * max_distance + 1, dim).to(device)
    return table[index]
