"""Attention for encoder-decoder models: self-attention and cross-attention in one module.

Unlike ``SelfAttention`` (one fused q/k/v projection), queries and keys/values are projected
separately, because cross-attention reads keys/values from the encoder output: ``kv`` is one
fused key/value Linear, and keys/values of the encoder can be computed once and reused for every
decoding step (``project_kv``). The head size may differ from hidden / heads (T5-3B and 11B),
and the score scale is a parameter (T5 folds 1/sqrt(d) into its initialisation: scale 1).

``mask`` is an ``AttentionMask`` whose tensor may be boolean (True = may attend) or additive
float (T5's position bias with -large at hidden keys), built once per pass by the backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionMask


def visible_keys(mask: AttentionMask, queries: int, keys: int, device) -> torch.Tensor | None:
    """The boolean mask of ``mask`` ([..., queries, keys], True = visible), None if all are."""
    if mask.mask is not None:
        return mask.mask
    if mask.is_causal:  # the queries are the last `queries` of the `keys` positions
        return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
    return None


def with_bias(bias: torch.Tensor, visible: torch.Tensor | None) -> AttentionMask:
    """An additive mask: ``bias`` where visible, the dtype's minimum elsewhere (finite, so that a
    query with no visible key gets uniform weights rather than NaN, as in T5)."""
    if visible is None:
        return AttentionMask(mask=bias)
    return AttentionMask(mask=torch.where(visible, bias, torch.finfo(bias.dtype).min))


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, head_dim: int | None = None, bias: bool = True,
                 scale: float | None = None, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.scale = scale  # None: 1/sqrt(head_dim)
        self.dropout = dropout
        inner = num_heads * self.head_dim
        self.q = nn.Linear(hidden_size, inner, bias=bias)
        self.kv = nn.Linear(hidden_size, 2 * inner, bias=bias)
        self.out = nn.Linear(inner, hidden_size, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H*D] -> [B, H, L, D]
        return x.view(x.shape[0], x.shape[1], -1, self.head_dim).transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, mask: AttentionMask, source: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None, cache=None, layer: int = 0) -> torch.Tensor:
        """Self-attention over ``x``, or cross-attention over ``source`` (or its precomputed ``kv``).

        ``cache`` (self-attention while decoding, a ``generation.KVCache``) stores this pass's
        keys/values for ``layer`` and returns all cached ones to attend over."""
        q = self._heads(self.q(x))
        k, v = kv if kv is not None else self.project_kv(x if source is None else source)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.mask, is_causal=mask.is_causal and mask.mask is None,
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale)
        return self.out(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
