"""Multi-head self-attention on top of ``scaled_dot_product_attention``, and mask builders.

Masks are built once per forward pass by the backbone and shared by all layers. An
``AttentionMask`` carries either nothing (full attention, the fastest SDPA path), the causal
flag (SDPA's own causal kernel), or an explicit boolean tensor (True = may attend) that
broadcasts to [batch, heads, query, key]. ``banded_mask`` narrows any causal mask to a local band
(the sparse layers of GPT-3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AttentionMask:
    mask: torch.Tensor | None = None  # bool, broadcastable to [B, H, Lq, Lk]
    is_causal: bool = False


def padding_mask(attention_mask: torch.Tensor | None) -> AttentionMask:
    """Bidirectional attention that ignores padded keys ([B, L] with 1 = token, 0 = pad)."""
    if attention_mask is None:
        return AttentionMask()
    keep = attention_mask.bool()
    if bool(keep.all()):
        return AttentionMask()
    return AttentionMask(mask=keep[:, None, None, :])


def document_mask(document_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  causal: bool = False) -> AttentionMask:
    """Packed sequences: each token attends only within its own document ([B, L] ids).

    Several documents share one row without padding, yet none sees another; with ``causal``
    attention is also left to right. Padded keys are excluded; every query may see itself.
    """
    same = document_ids[:, :, None] == document_ids[:, None, :]
    length = document_ids.shape[1]
    if causal:
        same &= torch.ones(length, length, dtype=torch.bool, device=same.device).tril()
    if attention_mask is not None:
        same &= attention_mask.bool()[:, None, :]
    same |= torch.eye(length, dtype=torch.bool, device=same.device)
    return AttentionMask(mask=same[:, None])


def causal_mask(length: int, attention_mask: torch.Tensor | None = None) -> AttentionMask:
    """Left-to-right attention, optionally also ignoring padded keys.

    With padding, every query may still attend to itself, so that rows of padded queries are
    not empty (an empty row would make SDPA return NaN, which then leaks through gradients).
    """
    if attention_mask is None or bool(attention_mask.bool().all()):
        return AttentionMask(is_causal=True)
    keep = attention_mask.bool()
    device = keep.device
    lower = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    mask = lower[None, :, :] & keep[:, None, :]
    mask |= torch.eye(length, dtype=torch.bool, device=device)[None]
    return AttentionMask(mask=mask[:, None, :, :])


def banded_mask(mask: AttentionMask, window: int, query_positions: torch.Tensor, num_keys: int) -> AttentionMask:
    """``mask`` (causal) restricted to a local band: each query also sees only the ``window`` most
    recent keys, itself included -- the locally banded pattern of the Sparse Transformer and GPT-3.

    ``query_positions`` ([Lq]) are the queries' indices among the ``num_keys`` keys (a KV cache
    appends new queries after the cached keys). Positions are indices in the row: with left or
    right padding, or packed documents, the real tokens of a text are contiguous, so the band
    counts real tokens.
    """
    keys = torch.arange(num_keys, device=query_positions.device)
    distance = query_positions[:, None] - keys[None, :]
    band = (distance >= 0) & (distance < window)  # [Lq, Lk]; also causal
    return AttentionMask(mask=band if mask.mask is None else mask.mask & band)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused query/key/value projection."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.out = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, mask: AttentionMask, cache=None, layer: int = 0) -> torch.Tensor:
        """``cache`` (a ``generation.KVCache``): store this layer's new keys/values there and attend
        over all cached ones; ``mask`` then comes from ``cache.begin``."""
        batch, length, hidden = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, D]
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask.mask,
            is_causal=mask.is_causal and mask.mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, hidden))


UNIFIED_MASKS = ("bidirectional", "left_to_right", "right_to_left", "seq2seq")


def unified_mask(kind: str, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """UniLM's self-attention masks, [B, L, L] boolean (True = query row may attend to key column).

    One Transformer becomes a bidirectional encoder, a left-to-right or right-to-left LM, or a
    sequence-to-sequence model only by what each token may see: ``bidirectional`` every token;
    ``left_to_right`` / ``right_to_left`` the tokens at or before / at or after itself;
    ``seq2seq`` (also called a prefix mask) the whole source segment (``token_type_ids`` 0) and the
    target tokens (1, after the source) at or before itself -- so source tokens never see the
    target. Padded keys ([B, L] ``attention_mask`` 0) are hidden; every query sees itself, so a
    padded query's row is never empty (SDPA would give NaN).
    """
    if kind not in UNIFIED_MASKS:
        raise ValueError(f"unknown mask kind {kind!r} (known: {', '.join(UNIFIED_MASKS)})")
    length = attention_mask.shape[1]
    device = attention_mask.device
    position = torch.arange(length, device=device)
    before = position[None, :] <= position[:, None]  # [query, key]: key at or before the query
    if kind == "bidirectional":
        visible = torch.ones(1, length, length, dtype=torch.bool, device=device)
    elif kind == "left_to_right":
        visible = before[None]
    elif kind == "right_to_left":
        visible = before.T[None]
    else:
        if token_type_ids is None:
            raise ValueError("the seq2seq mask needs token_type_ids (0 = source, 1 = target)")
        visible = (token_type_ids == 0)[:, None, :] | before[None]
    visible = visible & attention_mask.bool()[:, None, :]
    return visible | torch.eye(length, dtype=torch.bool, device=device)[None]
