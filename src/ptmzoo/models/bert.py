"""BERT: a post-LayerNorm Transformer encoder (Devlin et al., 2019), and the variants that differ
from it only in a few settings: RoBERTa, ALBERT and DistilBERT (at the end of the file), and
NEZHA's functional relative positions (``relative_positions: nezha``).

Embeddings are the sum of token, learned position and segment (token type) embeddings, then
LayerNorm and dropout. Each layer is self-attention and a feed-forward network, each followed by
dropout, a residual connection and LayerNorm ("post-LN"). The pooler maps the [CLS] state through
a dense layer and tanh; next-sentence prediction and CLS classification read it.

NEZHA (Wei et al., 2019) drops the position table: every layer's attention adds a fixed
sinusoidal vector a_ij of the clipped relative distance j - i (``nn.positions``) to the keys and
to the values, e_ij = q_i . (k_j + a_ij) / sqrt(d) and z_i = sum_j p_ij (v_j + a_ij) -- the key
term through the attention's ``score_bias`` hook, the value term through its ``value_positions``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from ..errors import UserError
from ..nn import (
    Attention,
    AttentionMask,
    FeedForward,
    activation,
    causal_mask,
    document_mask,
    init_transformer_weights,
    padding_mask,
)
from ..nn.ffn import ACTIVATIONS
from ..nn.positions import nezha_relative_positions
from .base import Backbone, BackboneOutput, TransformerConfig
from .inputs import check_length

# ALBERT cross-layer sharing: nothing, whole layers, attention only, feed-forward only
Sharing = Literal["none", "all", "attention", "ffn"]


@dataclass
class BertConfig(TransformerConfig):
    type_vocab_size: int = 2  # 0: no segment embeddings (DistilBERT)
    pad_token_id: int = 0
    add_pooler: bool = True
    pooler_act: str = "tanh"  # DistilBERT's classifier reads [CLS] through a ReLU layer instead
    # ALBERT: embeddings of size E, projected up to the hidden size when they differ (None: E = H)
    embedding_size: int | None = None
    # ALBERT: which parts of the layers are one set of weights used by every layer
    share_layers: Sharing = "none"
    # RoBERTa (fairseq): position rows start after the padding index and pads use the padding row;
    # max_position_embeddings stays the longest input, the table has pad_token_id + 1 rows more
    positions_after_padding: bool = False
    # NEZHA: no position table; sinusoidal relative positions (clipped at max_relative_position) in every layer
    relative_positions: str | None = None
    max_relative_position: int = 64
    # head pruning (compress.prune): the heads each layer kept (of num_heads, each hidden/num_heads
    # wide; 0 = the layer has no attention left); None: num_heads everywhere
    layer_heads: list[int] | None = None

    def validate(self) -> None:
        super().validate()
        if self.relative_positions not in (None, "nezha"):
            raise UserError(f"model.relative_positions must be null (a position table) or 'nezha', not "
                            f"{self.relative_positions!r}")
        if self.max_relative_position < 1:
            raise UserError("model.max_relative_position must be at least 1")
        if self.layer_heads is not None:
            if len(self.layer_heads) != self.num_layers or not all(0 <= h <= self.num_heads for h in self.layer_heads):
                raise UserError(f"model.layer_heads must give 0 to {self.num_heads} heads for each of the "
                                f"{self.num_layers} layers, not {self.layer_heads}")
            if self.share_layers != "none":
                raise UserError("model.layer_heads (pruned heads) cannot be combined with shared layers")
        if self.type_vocab_size < 0:
            raise UserError("model.type_vocab_size must be 0 (no segment embeddings) or more")
        if self.embedding_size is not None and self.embedding_size < 1:
            raise UserError("model.embedding_size must be at least 1 (or null: the hidden size)")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(f"model.pad_token_id ({self.pad_token_id}) must be a token id below "
                            f"model.vocab_size ({self.vocab_size})")
        if self.pooler_act not in ACTIVATIONS:
            raise UserError(f"model.pooler_act {self.pooler_act!r} is not one of {', '.join(ACTIVATIONS)}")

    @property
    def position_offset(self) -> int:
        """Index of the embedding row of position 0."""
        return self.pad_token_id + 1 if self.positions_after_padding else 0


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        size = config.embedding_size or config.hidden_size
        self.offset = config.position_offset
        self.pad_token_id = config.pad_token_id
        self.max_positions = config.max_position_embeddings
        self.word = nn.Embedding(config.vocab_size, size, padding_idx=config.pad_token_id)
        self.position = None if config.relative_positions else nn.Embedding(
            config.max_position_embeddings + self.offset, size, padding_idx=config.pad_token_id if self.offset else None)
        self.token_type = nn.Embedding(config.type_vocab_size, size) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        # ALBERT: the factorized embedding is projected to the hidden size after the dropout
        self.project = nn.Linear(size, config.hidden_size) if size != config.hidden_size else None

    def position_rows(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        """Rows of the position table: 0-based ``position_ids`` (packed documents) plus the offset;
        without them, RoBERTa counts the non-pad tokens, so left padding does not shift positions."""
        if position_ids is not None:
            return position_ids + self.offset
        if not self.offset:
            return torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        real = (input_ids != self.pad_token_id).long()
        return real.cumsum(dim=1) * real + self.pad_token_id

    def segments(self, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """What the segment table adds: segment 0 everywhere when no ids are given."""
        return self.token_type.weight[0] if token_type_ids is None else self.token_type(token_type_ids)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        x = self.word(input_ids)
        if self.position is not None:
            check_length(input_ids.shape[1], self.max_positions)
            x = x + self.position(self.position_rows(input_ids, position_ids))
        if self.token_type is not None:
            x = x + self.segments(token_type_ids)
        x = self.dropout(self.norm(x))
        return self.project(x) if self.project is not None else x


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig, heads: int | None = None):
        super().__init__()
        heads = config.num_heads if heads is None else heads  # fewer after head pruning
        self.attention = Attention(config.hidden_size, heads, config.attention_dropout,
                                   head_dim=config.hidden_size // config.num_heads)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask, cache=None, layer: int = 0, relative: torch.Tensor | None = None):
        """``cache``/``layer``: decoding with a ``generation.KVCache`` (UniLM); ``relative``: NEZHA's
        a_ij [L, L, head_dim], added to the keys and the values."""
        extra = {} if relative is None else {"score_bias": relative_key_terms(relative, self.attention.score_scale),
                                             "value_positions": relative}
        x = self.attention_norm(x + self.dropout(self.attention(x, mask, cache=cache, layer=layer, **extra)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


def relative_key_terms(relative: torch.Tensor, scale: float):
    """The score hook of relative key vectors: q_i . a_ij, scaled as the scores."""
    return lambda q: torch.einsum("bhid,ijd->bhij", q, relative.to(q.dtype)) * scale


def build_layers(config: BertConfig) -> nn.ModuleList:
    """``num_layers`` layers; with ALBERT's sharing, later layers reuse the first layer's modules
    (each LayerNorm goes with the sub-layer it normalises). Shared modules appear under every
    layer's name in the state dict but are one set of parameters."""
    heads = config.layer_heads or [config.num_heads] * config.num_layers
    first = BertLayer(config, heads[0])
    layers = [first]
    for index in range(1, config.num_layers):
        if config.share_layers == "all":
            layers.append(first)
            continue
        layer = BertLayer(config, heads[index])
        if config.share_layers == "attention":
            layer.attention, layer.attention_norm = first.attention, first.attention_norm
        elif config.share_layers == "ffn":
            layer.ffn, layer.ffn_norm = first.ffn, first.ffn_norm
        layers.append(layer)
    return nn.ModuleList(layers)


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.pooler_act)

    def forward(self, hidden):
        return self.act(self.dense(hidden[:, 0]))


class BertModel(Backbone):
    config_class = BertConfig
    embeddings_class = BertEmbeddings
    relative_positions_supported: ClassVar[bool] = True  # its forward passes NEZHA's a_ij to the layers
    supports_layerdrop = True

    def __init__(self, config: BertConfig):
        super().__init__(config)
        if config.relative_positions and not self.relative_positions_supported:
            raise UserError(f"model.relative_positions is not supported by {type(self).__name__}; use the bert "
                            "family (preset nezha-base)")
        self.embeddings = self.embeddings_class(config)
        self.layers = build_layers(config)
        self.pooler = BertPooler(config) if config.add_pooler else None
        init_transformer_weights(self, config.initializer_range)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    @property
    def has_pooler(self) -> bool:
        return self.pooler is not None

    def relative_positions(self, length: int, device) -> torch.Tensor | None:
        """NEZHA's a_ij for a sequence of ``length`` (None: absolute positions)."""
        config = self.config
        if not config.relative_positions:
            return None
        return nezha_relative_positions(length, length, config.hidden_size // config.num_heads,
                                        config.max_relative_position, device).to(self.embeddings.word.weight.dtype)

    def self_attention_mask(self, input_ids, attention_mask, document_ids) -> AttentionMask:
        """Padded keys are never attended to, packed documents never see each other, and a causal
        encoder (XLM's CLM) attends left to right."""
        if document_ids is not None:
            return document_mask(document_ids, attention_mask, causal=self.causal)
        return causal_mask(input_ids.shape[1], attention_mask) if self.causal else padding_mask(attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        document_ids: torch.Tensor | None = None,
        layers: Sequence[Callable] | None = None,
    ) -> BackboneOutput:
        """``layers``: blocks ``(x, mask) -> x`` to run instead of ``self.layers`` (module replacing)."""
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = self.self_attention_mask(input_ids, attention_mask, document_ids)
        relative = self.relative_positions(input_ids.shape[1], x.device)
        states = [x] if output_hidden_states else None
        layers = self.layers if layers is None else layers
        for layer, run in zip(layers, self.layers_to_run(len(layers))):
            if run:
                x = layer(x, mask, relative=relative)
            if states is not None:
                states.append(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BackboneOutput(x, pooled, tuple(states) if states is not None else None)


# --------------------------------------------------------------------------------------------
# Variants: the same network with other defaults, registered as their own families (presets
# and Hugging Face conversion differ per family).


@dataclass
class RobertaConfig(BertConfig):
    """RoBERTa (Liu et al., 2019): BERT's network with fairseq's padding-aware positions, one
    segment, byte-level BPE (50,265 tokens, <pad> = 1); trained with dynamic MLM, no NSP."""

    vocab_size: int = 50265
    type_vocab_size: int = 1
    pad_token_id: int = 1
    layer_norm_eps: float = 1e-5
    positions_after_padding: bool = True
    add_pooler: bool = False  # no NSP: a pooler would go untrained (and unused parameters stall DDP)


class RobertaModel(BertModel):
    config_class = RobertaConfig


@dataclass
class AlbertConfig(BertConfig):
    """ALBERT (Lan et al., 2020): factorized embeddings (E = 128) and all layers sharing one set
    of weights; trained with MLM and sentence-order prediction."""

    vocab_size: int = 30000
    embedding_size: int | None = 128
    share_layers: Sharing = "all"
    hidden_act: str = "gelu_new"
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0


class AlbertModel(BertModel):
    config_class = AlbertConfig


@dataclass
class DistilBertConfig(BertConfig):
    """DistilBERT (Sanh et al., 2019): half of BERT-base's layers, no segment embeddings, no
    pooler; initialised from a teacher (``compress.student``) and trained by distillation."""

    num_layers: int = 6
    type_vocab_size: int = 0
    add_pooler: bool = False


class DistilBertModel(BertModel):
    config_class = DistilBertConfig
