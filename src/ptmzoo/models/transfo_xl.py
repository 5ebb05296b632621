"""Transformer-XL (Dai et al., 2019): a decoder that reads past its segment.

*Segment-level recurrence.* Each layer also attends to a memory: the states that entered it for
the previous segment(s), kept without gradient (``mems``, one [B, M, hidden] tensor per layer,
the last ``mem_len`` of them). A token of segment t sees up to ``num_layers x mem_len`` tokens back.

*Relative positions.* No position is added to the tokens. The score of query i against key j is

    A_ij = q_i . k_j  +  q_i . W_R R_{i-j}  +  u . k_j  +  v . W_R R_{i-j}
             (a)            (b)               (c)          (d)

with q, k the projected content, R_{i-j} the sinusoid of the distance and u, v learned global
biases (one pair per model, or per layer with ``untie_r``). (a) + (c) is ``(q + u) . k``, the
attention's own product with ``content_bias``; (b) + (d) is the ``score_bias`` hook, computed
against every distance once and moved into place by the relative shift (``nn.positions``). The
layers are post-LayerNorm: attention, then a ReLU feed-forward network, each with a residual.

*Adaptive input* (``cutoffs``, ``div_val``): embeddings shrink for rare clusters of the
vocabulary; the language-model head (``objectives.xl_lm``) is the adaptive softmax tied to them.

The memory belongs to whoever runs the model: the ``xl_lm`` objective carries it across training
steps (and keeps another for evaluation), perplexity evaluation and generation carry their own;
the backbone only takes ``mems`` and returns the next ones. XLNet (``xlnet.py``) is this backbone
with two-stream attention, relative segments and permutation masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UserError
from ..nn import Attention, AttentionMask, FeedForward, init_transformer_weights
from ..nn.adaptive import AdaptiveEmbedding, cluster_bounds
from ..nn.attention import ScoreBias, visible_keys
from ..nn.positions import relative_distances, relative_shift, relative_sinusoids
from .base import Backbone, BackboneOutput, ModelOutput, TransformerConfig
from .model import PtmModel

Memory = tuple[torch.Tensor, ...]  # one [batch, memory length, hidden] tensor per layer
CONFIG_MEM_LEN = "config"  # forward(mem_len=...) default: the config's mem_len


@dataclass
class TransfoXLConfig(TransformerConfig):
    vocab_size: int = 267735  # WikiText-103
    hidden_size: int = 410
    num_layers: int = 16
    num_heads: int = 10
    intermediate_size: int = 2100
    hidden_act: str = "relu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    # no position table: the longest input fine-tuning tasks cut their texts to
    max_position_embeddings: int = 512
    mem_len: int | None = 150  # states kept per layer (0: no memory; None: keep all)
    reuse_len: int | None = None  # only the first reuse_len tokens of a segment enter the memory (XLNet)
    clamp_len: int = -1  # > 0: longer distances share the encoding of this one
    untie_r: bool = False  # each layer its own u and v (the paper shares one pair)
    cutoffs: list[int] = field(default_factory=list)  # adaptive input/softmax clusters (empty: one)
    div_val: int = 1  # cluster i embeds in embedding_size / div_val**i dimensions
    embedding_size: int | None = None  # the first cluster's size (None: the hidden size)
    scale_embeddings: bool = True  # embeddings times sqrt(hidden), as in the paper
    pad_token_id: int = 0

    def validate(self) -> None:
        super().validate()
        if self.mem_len is not None and self.mem_len < 0:
            raise UserError("model.mem_len must be 0 (no memory), positive, or null (keep every state)")
        if self.reuse_len is not None and self.reuse_len < 1:
            raise UserError("model.reuse_len must be at least 1 (or null: the whole segment)")
        if self.div_val < 1 or (self.embedding_size is not None and self.embedding_size < 1):
            raise UserError("model.div_val and model.embedding_size must be at least 1")
        try:
            cluster_bounds(self.vocab_size, self.cutoffs)
        except ValueError as exc:
            raise UserError(f"model.cutoffs: {exc}") from None


@dataclass
class MemoryOutput(BackboneOutput):
    mems: Memory | None = None  # the memory for the next segment (no gradient)


@dataclass
class MemoryModelOutput(ModelOutput):
    mems: Memory | None = None


class MemoryModel(PtmModel):
    """``PtmModel`` whose output also carries the backbone's next memory (``.mems``)."""

    def wrap_output(self, out: MemoryOutput) -> MemoryModelOutput:
        return MemoryModelOutput(out.last_hidden_state, out.pooler_output, out.hidden_states, mems=out.mems)


def next_memory(mems: Memory | None, layer_inputs: list[torch.Tensor], mem_len: int | None,
                reuse_len: int | None = None) -> Memory | None:
    """Each layer's memory for the next segment: its old memory and this segment's inputs to the
    layer (the first ``reuse_len`` of them), the last ``mem_len`` kept, detached."""
    if mem_len == 0:
        return None
    new = []
    for i, states in enumerate(layer_inputs):
        if reuse_len is not None:
            states = states[:, :reuse_len]
        if mems is not None:
            states = torch.cat([mems[i], states], dim=1)
        new.append((states if mem_len is None else states[:, -mem_len:]).detach())
    return tuple(new)


class RelativeBiases(nn.Module):
    """The learned global biases u (``content``, term (c)) and v (``position``, term (d)), per head."""

    def __init__(self, num_heads: int, head_dim: int, std: float):
        super().__init__()
        self.content = nn.Parameter(torch.empty(num_heads, head_dim).normal_(std=std))
        self.position = nn.Parameter(torch.empty(num_heads, head_dim).normal_(std=std))


class RelativeLayer(nn.Module):
    """Relative multi-head attention over [memory; segment], then the feed-forward network,
    each followed by dropout, the residual and LayerNorm."""

    def __init__(self, config: TransfoXLConfig, biases: RelativeBiases):
        super().__init__()
        hidden = config.hidden_size
        self.attention = Attention(hidden, config.num_heads, config.attention_dropout, bias=False)
        self.relative = nn.Linear(hidden, hidden, bias=False)  # W_R: distance encodings -> keys
        self.biases = biases
        self.attention_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn = FeedForward(hidden, config.intermediate_size, config.hidden_act, dropout=config.hidden_dropout)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def relative_terms(self, positions: torch.Tensor, keys: int) -> ScoreBias:
        """The hook that adds (b) + (d), (q_i + v) . W_R R_{i-j}, to the scaled scores; ``positions``
        [keys + queries, hidden] are the encodings of ``relative_distances``."""
        heads, dim = self.attention.num_heads, self.attention.head_dim
        r = self.relative(positions).view(-1, heads, dim).transpose(0, 1)  # [H, R, D]
        scale = self.attention.score_scale

        def bias(q: torch.Tensor) -> torch.Tensor:
            scores = torch.einsum("bhid,hrd->bhir", q + self.biases.position[None, :, None, :].to(q.dtype), r.to(q.dtype))
            return relative_shift(scores, keys) * scale

        return bias

    def attend(self, x: torch.Tensor, mask: AttentionMask, bias: ScoreBias, **kv) -> torch.Tensor:
        """Attention of ``x`` with the relative terms, through ``dropout`` + residual + LayerNorm."""
        out = self.attention(x, mask, score_bias=bias, content_bias=self.biases.content, **kv)
        return self.attention_norm(x + self.dropout(out))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_norm(x + self.dropout(self.ffn(x)))

    def forward(self, x: torch.Tensor, mask: AttentionMask, positions: torch.Tensor,
                memory: torch.Tensor | None = None) -> torch.Tensor:
        keys = x.shape[1] + (memory.shape[1] if memory is not None else 0)
        return self.feed_forward(self.attend(x, mask, self.relative_terms(positions, keys), memory=memory))


class TransfoXLModel(Backbone):
    config_class = TransfoXLConfig
    inputs = ("input_ids", "attention_mask", "mems")
    causal = True
    biases_class = RelativeBiases
    layer_class = RelativeLayer

    def __init__(self, config: TransfoXLConfig):
        super().__init__(config)
        self.embeddings = AdaptiveEmbedding(config.vocab_size, config.hidden_size,
                                            config.embedding_size or config.hidden_size, config.cutoffs,
                                            config.div_val, scale=config.scale_embeddings)
        self.dropout = nn.Dropout(config.hidden_dropout)
        head_dim = config.hidden_size // config.num_heads
        shared = None if config.untie_r else self.biases_class(config.num_heads, head_dim, config.initializer_range)
        self.layers = nn.ModuleList(
            self.layer_class(config, shared or self.biases_class(config.num_heads, head_dim, config.initializer_range))
            for _ in range(config.num_layers))
        init_transformer_weights(self, config.initializer_range)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.embeddings.layers[0]

    @property
    def max_length(self) -> int | None:
        return None  # relative positions: any length

    def relative_positions(self, queries: int, keys: int, device) -> torch.Tensor:
        """R of every distance ``relative_shift`` reads ([keys + queries, hidden]), with dropout."""
        distances = relative_distances(queries, keys, self.config.clamp_len, device)
        return self.dropout(relative_sinusoids(distances, self.config.hidden_size).to(self.embeddings.layers[0].weight.dtype))

    @staticmethod
    def memory_length(mems: Memory | None) -> int:
        return 0 if mems is None else mems[0].shape[1]

    @staticmethod
    def key_padding(attention_mask: torch.Tensor | None, memory: int, length: int) -> torch.Tensor | None:
        """[B, memory + length] bool, True = a real key: ``attention_mask`` covers the segment
        ([B, length]: the memory is all real) or the memory and the segment."""
        if attention_mask is None:
            return None
        keep = attention_mask.bool()
        if keep.shape[1] == length and memory:
            keep = torch.cat([keep.new_ones(keep.shape[0], memory), keep], dim=1)
        if keep.shape[1] != memory + length:
            raise ValueError(f"attention_mask has {keep.shape[1]} columns; give one per token ({length}) or per "
                             f"memory slot and token ({memory + length})")
        return None if bool(keep.all()) else keep

    def visibility(self, attention_mask: torch.Tensor | None, length: int, memory: int, device) -> AttentionMask:
        """Causal over [memory; segment]: query i sees the memory and the segment up to itself,
        real keys only (and always itself, so no row is empty)."""
        keep = self.key_padding(attention_mask, memory, length)
        if keep is None:
            return AttentionMask(is_causal=True)
        causal = visible_keys(AttentionMask(is_causal=True), length, memory + length, device)
        itself = torch.zeros(length, memory + length, dtype=torch.bool, device=device)
        itself[torch.arange(length), memory + torch.arange(length)] = True
        return AttentionMask(mask=((causal[None] & keep[:, None, :]) | itself)[:, None])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, mems: Memory | None = None,
                output_hidden_states: bool = False, mem_len: int | None | str = CONFIG_MEM_LEN) -> MemoryOutput:
        """``mems``: the memory returned for the previous segment (None: none). ``mem_len``:
        states kept in the returned memory (default: the config's)."""
        length, memory = input_ids.shape[1], self.memory_length(mems)
        x = self.dropout(self.embeddings(input_ids))
        positions = self.relative_positions(length, memory + length, x.device)
        mask = self.visibility(attention_mask, length, memory, x.device)
        layer_inputs = []
        for i, layer in enumerate(self.layers):
            layer_inputs.append(x)
            x = layer(x, mask, positions, None if mems is None else mems[i])
        x = self.dropout(x)
        keep = self.config.mem_len if mem_len == CONFIG_MEM_LEN else mem_len
        states = tuple(layer_inputs + [x]) if output_hidden_states else None
        return MemoryOutput(x, None, states, next_memory(mems, layer_inputs, keep, self.config.reuse_len))
