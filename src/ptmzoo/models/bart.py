"""BART: a denoising sequence-to-sequence Transformer (Lewis et al., 2020).

A BERT-like bidirectional encoder and a GPT-like left-to-right decoder, both post-LayerNorm with
GELU, learned absolute positions and a LayerNorm on the embeddings. The decoder layers add
cross-attention over the final encoder states. The token embedding is shared by encoder, decoder
and output layer. The position tables are two rows longer than the longest sequence and
positions start at 2 -- a quirk of the fairseq checkpoints, kept so that their weights load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nn import FeedForward, init_transformer_weights, padding_mask
from ..nn.attention import Attention
from .base import TransformerConfig
from .inputs import check_length
from .seq2seq import EncoderDecoder

POSITION_OFFSET = 2  # fairseq reserved the first two rows of the position table


@dataclass
class BartConfig(TransformerConfig):
    vocab_size: int = 50265
    num_layers: int = 6  # encoder layers
    num_decoder_layers: int | None = None  # default: num_layers
    hidden_act: str = "gelu"
    attention_dropout: float = 0.0
    max_position_embeddings: int = 1024
    layer_norm_eps: float = 1e-5
    scale_embedding: bool = False  # multiply token embeddings by sqrt(hidden) (mBART-style)
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int | None = None  # default: the end-of-sequence token, as in BART

    def validate(self) -> None:
        super().validate()
        if self.num_decoder_layers is not None and self.num_decoder_layers < 1:
            raise UserError("model.num_decoder_layers must be at least 1")


class BartLayer(nn.Module):
    def __init__(self, config: BartConfig, cross: bool):
        super().__init__()
        hidden = config.hidden_size

        def attention():
            return Attention(hidden, config.num_heads, dropout=config.attention_dropout, fused=False)

        self.self_attention, self.self_norm = attention(), nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.cross_attention, self.cross_norm = ((attention(), nn.LayerNorm(hidden, eps=config.layer_norm_eps))
                                                 if cross else (None, None))
        self.ffn = FeedForward(hidden, config.intermediate_size, config.hidden_act)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask, memory=None, memory_mask=None, cache=None, layer: int = 0):
        x = self.self_norm(x + self.dropout(self.self_attention(x, mask, cache=cache, layer=layer)))
        if self.cross_attention is not None:
            kv = cache.cross(layer, self.cross_attention, memory) if cache is not None else None
            x = self.cross_norm(x + self.dropout(self.cross_attention(x, memory_mask, source=memory, kv=kv)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class BartStack(nn.Module):
    """Encoder or decoder: learned positions, embedding LayerNorm, post-LN layers."""

    def __init__(self, config: BartConfig, decoder: bool):
        super().__init__()
        layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
        self.position = nn.Embedding(config.max_position_embeddings + POSITION_OFFSET, config.hidden_size)
        self.embed_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(BartLayer(config, cross=decoder) for _ in range(layers))
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.max_positions = config.max_position_embeddings

    def forward(self, tokens, mask, start: int, memory=None, memory_mask=None, cache=None):
        """``tokens``: the scaled token embeddings of positions start, start + 1, ..."""
        end = start + tokens.shape[1]
        check_length(end, self.max_positions)
        positions = torch.arange(start, end, device=tokens.device) + POSITION_OFFSET
        x = self.dropout(self.embed_norm(tokens + self.position(positions)))
        for layer, block in enumerate(self.layers):
            x = block(x, mask, memory, memory_mask, cache, layer)
        return x


class BartModel(EncoderDecoder):
    default_decoder_start = "eos_token_id"
    config_class = BartConfig
    final_logits_bias = True

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embedding else 1.0
        self.encoder = BartStack(config, decoder=False)
        self.decoder = BartStack(config, decoder=True)
        init_transformer_weights(self, config.initializer_range)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.shared

    @property
    def bos_token_id(self) -> int:
        return self.config.bos_token_id

    def encode(self, input_ids, attention_mask=None):
        return self.encoder(self.shared(input_ids) * self.embed_scale, padding_mask(attention_mask), 0)

    def decode(self, decoder_input_ids, memory, memory_mask, attention_mask=None, cache=None):
        mask, start, _ = self.self_attention_mask(decoder_input_ids.shape[1], attention_mask, cache)
        states = self.decoder(self.shared(decoder_input_ids) * self.embed_scale, mask, start, memory, memory_mask,
                              cache)
        if cache is not None:
            cache.end()
        return states
