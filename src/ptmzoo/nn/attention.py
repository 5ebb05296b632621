"""The one attention module of every family (on top of ``scaled_dot_product_attention``), and
the mask builders.

Masks are built once per forward pass by the backbone and shared by all layers. An
``AttentionMask`` carries either nothing (full attention, the fastest SDPA path), the causal
flag (SDPA's own causal kernel), or an explicit boolean tensor (True = may attend) that
broadcasts to [batch, heads, query, key]. ``banded_mask`` narrows any causal mask to a local band
(the sparse layers of GPT-3).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AttentionMask:
    mask: torch.Tensor | None = None  # bool, broadcastable to [B, H, Lq, Lk]
    is_causal: bool = False


def no_padding(attention_mask: torch.Tensor | None) -> bool:
    """Whether a [B, L] attention mask has no padding, so that a mask-free SDPA kernel may run.

    Decided from the values in eager mode (free for a CPU tensor; one device sync on an
    accelerator, which buys the mask-free flash kernel). Inside ``torch.compile`` reading a value
    would break the graph, so there only None counts as unpadded and otherwise the explicit mask is
    built (the same attention).
    """
    if attention_mask is None:
        return True
    if torch.compiler.is_compiling():
        return False
    return bool(attention_mask.bool().all())


def padding_mask(attention_mask: torch.Tensor | None) -> AttentionMask:
    """Bidirectional attention that ignores padded keys ([B, L] with 1 = token, 0 = pad)."""
    if no_padding(attention_mask):
        return AttentionMask()
    keep = attention_mask.bool()
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
    if no_padding(attention_mask):
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


# ``score_bias(q)`` -> an additive bias of the (scaled) scores, broadcastable to [B, H, Lq, Lk]:
# query-dependent position terms (Transformer-XL's relative terms, XLNet's streams) plug in here.
ScoreBias = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttentionInternals:
    """What one attention call computed, for the losses that read inside attention (TinyBERT's
    attention scores, MiniLM's attention distributions and value relations): per-head queries,
    keys and values [B, H, L, D], the mask it applied (boolean or additive, or causal) and its scale."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | None
    is_causal: bool
    scale: float

    def visible(self) -> torch.Tensor | None:
        """Boolean [.., Lq, Lk] (True = the query may attend to the key), None when all may."""
        if self.mask is not None and self.mask.dtype == torch.bool:
            return self.mask
        if self.is_causal:
            queries, keys = self.q.shape[2], self.k.shape[2]
            return torch.ones(queries, keys, dtype=torch.bool, device=self.q.device).tril(keys - queries)
        return None

    def scores(self) -> torch.Tensor:
        """The scaled scores q k^T * scale plus an additive mask [B, H, Lq, Lk], before masking
        (hidden keys keep their raw score; ``visible`` says which they are)."""
        scores = (self.q @ self.k.transpose(-1, -2)).float() * self.scale
        if self.mask is not None and self.mask.dtype != torch.bool:
            scores = scores + self.mask.float()
        return scores

    def probabilities(self) -> torch.Tensor:
        """The attention distributions softmax(scores) over the visible keys [B, H, Lq, Lk] (float32)."""
        scores = self.scores()
        visible = self.visible()
        if visible is not None:
            scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1)


@contextlib.contextmanager
def capture_attention(module: nn.Module) -> Iterator[list[AttentionInternals]]:
    """Record every call of the ``Attention`` modules inside ``module`` while the block runs, in
    call order (a shared layer appears once per use); the normal path pays one ``if``."""
    records: list[AttentionInternals] = []
    attentions = [m for m in module.modules() if isinstance(m, Attention)]
    for attention in attentions:
        attention.recorder = records
    try:
        yield records
    finally:
        for attention in attentions:
            attention.recorder = None


class Attention(nn.Module):
    """Multi-head attention over ``scaled_dot_product_attention``, for every family.

    Queries come from ``x``, keys and values from ``source`` (cross-attention), from precomputed
    ``kv`` (an encoder's, reused at each decoding step) or from ``x`` itself; ``memory`` ([B, M,
    hidden], no gradient) is prepended to the key/value input of self-attention (Transformer-XL's
    cached segment). ``fused`` projects q, k, v with one Linear (``qkv``: self-attention only, the
    fast path of BERT and GPT); otherwise ``q`` and ``kv`` are separate Linears (encoder-decoders).
    The head size may differ from hidden / heads (T5-3B and 11B), and the score scale is a
    parameter (T5 folds 1/sqrt(d) into its initialisation: scale 1).

    ``mask`` (an ``AttentionMask``: boolean, True = may attend, or additive float) is built once
    per pass by the backbone; a bias that does not depend on the queries is folded into it once
    (T5's relative buckets: ``with_bias``), one that does is the ``score_bias`` hook (``ScoreBias``:
    Transformer-XL's relative terms, XLNet's two streams). ``cache`` (a ``generation.KVCache``, self-attention
    while decoding) stores this pass's keys/values for ``layer`` and returns all cached ones.

    Relative attention needs two more terms. ``content_bias`` ([heads, head_dim]) is added to the
    queries of the content scores only: (q + u) . k holds Transformer-XL's term (c), u . k_j, beside
    (a), while ``score_bias`` still receives the plain queries. ``value_positions`` ([Lq, Lk,
    head_dim], Shaw et al.'s a^V_ij, NEZHA's functional relative positions) is added to the values
    each query reads, weighted by its attention: z_i = sum_j p_ij (v_j + a^V_ij). SDPA cannot add
    to the values, so with it the attention is computed in full (scores, softmax, two products).
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 head_dim: int | None = None, scale: float | None = None, fused: bool = True):
        super().__init__()
        if head_dim is None and hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.scale = scale  # None: 1/sqrt(head_dim)
        self.dropout = dropout
        inner = num_heads * self.head_dim
        self.fused = fused
        if fused:
            self.qkv = nn.Linear(hidden_size, 3 * inner, bias=bias)
        else:
            self.q = nn.Linear(hidden_size, inner, bias=bias)
            self.kv = nn.Linear(hidden_size, 2 * inner, bias=bias)
        self.out = nn.Linear(inner, hidden_size, bias=bias)
        self.recorder: list[AttentionInternals] | None = None  # set by ``capture_attention``

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H*D] -> [B, H, L, D]
        return x.view(x.shape[0], x.shape[1], -1, self.head_dim).transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``source`` ([B, H, L, D] each), e.g. an encoder's output."""
        if self.fused:
            _, k, v = self.qkv(source).chunk(3, dim=-1)
        else:
            k, v = self.kv(source).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def project(self, x: torch.Tensor, source: torch.Tensor | None, memory: torch.Tensor | None):
        """Queries of ``x`` and keys/values of ``source`` (or of ``memory`` + ``x``)."""
        if self.fused and source is None:  # one matmul for all three (over the memory too)
            states = x if memory is None else torch.cat([memory.detach(), x], dim=1)
            q, k, v = self.qkv(states).chunk(3, dim=-1)
            return self._heads(q[:, -x.shape[1]:]), self._heads(k), self._heads(v)
        source = x if source is None else source
        if memory is not None:
            source = torch.cat([memory.detach(), source], dim=1)
        k, v = self.project_kv(source)
        return self.project_q(x), k, v

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        """Queries of ``x`` alone ([B, H, L, D]), e.g. to attend to precomputed keys/values."""
        inner = self.num_heads * self.head_dim
        if not self.fused:
            return self._heads(self.q(x))
        bias = self.qkv.bias[:inner] if self.qkv.bias is not None else None
        return self._heads(F.linear(x, self.qkv.weight[:inner], bias))

    @property
    def score_scale(self) -> float:
        """The factor of q . k in the scores (what a ``score_bias`` multiplies its own terms by)."""
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    def forward(self, x: torch.Tensor, mask: AttentionMask, source: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None, cache=None, layer: int = 0,
                memory: torch.Tensor | None = None, score_bias: ScoreBias | None = None,
                content_bias: torch.Tensor | None = None,
                value_positions: torch.Tensor | None = None) -> torch.Tensor:
        if kv is not None:
            q = self.project_q(x)
            k, v = kv
        else:
            q, k, v = self.project(x, source, memory)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        attn_mask, is_causal = mask.mask, mask.is_causal and mask.mask is None
        if score_bias is not None:
            bias = score_bias(q).to(q.dtype)
            attn_mask = with_bias(bias, visible_keys(mask, q.shape[2], k.shape[2], q.device)).mask
            is_causal = False
        if content_bias is not None:  # after the hook: it sees the plain queries
            q = q + content_bias.to(q.dtype)[None, :, None, :]
        if self.recorder is not None:  # attention distillation reads the scores (compress)
            scale = self.scale if self.scale is not None else 1 / math.sqrt(q.shape[-1])
            self.recorder.append(AttentionInternals(q, k, v, attn_mask, is_causal, scale))
        dropout = self.dropout if self.training else 0.0
        if value_positions is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout,
                                               scale=self.scale)
        else:
            scores = (q @ k.transpose(-1, -2)) * self.score_scale
            if is_causal:
                attn_mask = visible_keys(mask, q.shape[2], k.shape[2], q.device)
            if attn_mask is not None:
                scores = (scores + attn_mask if attn_mask.dtype != torch.bool
                          else scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min))
            probs = F.dropout(scores.softmax(dim=-1), dropout)
            y = probs @ v + torch.einsum("bhij,ijd->bhid", probs, value_positions.to(probs.dtype))
        return self.out(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


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
