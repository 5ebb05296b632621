"""The original Transformer (Vaswani et al., 2017, "Attention Is All You Need").

An encoder of self-attention layers and a decoder whose layers add masked (causal)
self-attention and cross-attention over the encoder output -- the three attentions. Layers are
post-LayerNorm with ReLU feed-forward networks (the layer is BART's, which kept this design).
Positions are the fixed sinusoids added to the token embeddings scaled by sqrt(d_model); no
embedding LayerNorm. With a shared (joint BPE) vocabulary, the source embeddings, the target
embeddings and the output projection are one matrix (``share_embeddings``); label smoothing
(eps = 0.1) is an option of the ``seq2seq_lm`` head, set by the translation task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..nn import init_transformer_weights, padding_mask
from ..nn.positions import sinusoidal_positions
from .bart import BartConfig, BartLayer
from .inputs import check_length
from .seq2seq import EncoderDecoder


@dataclass
class TransformerSeq2SeqConfig(BartConfig):
    vocab_size: int = 37000  # the paper's shared BPE vocabulary (en-de)
    hidden_size: int = 512
    num_layers: int = 6
    num_heads: int = 8
    intermediate_size: int = 2048
    hidden_act: str = "relu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.0
    max_position_embeddings: int = 1024  # the sinusoids have no limit; tasks truncate to this
    scale_embedding: bool = True
    share_embeddings: bool = True  # one matrix for source, target and output (a shared vocabulary)
    tie_word_embeddings: bool = True  # output projection = target embeddings (when not shared)
    decoder_start_token_id: int | None = None  # default: the beginning-of-sequence token


class TransformerStack(nn.Module):
    """Encoder or decoder: scaled embeddings + sinusoids, dropout, post-LN layers."""

    def __init__(self, config: TransformerSeq2SeqConfig, decoder: bool):
        super().__init__()
        layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
        self.layers = nn.ModuleList(BartLayer(config, cross=decoder) for _ in range(layers))
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.register_buffer("positions", sinusoidal_positions(config.max_position_embeddings, config.hidden_size),
                             persistent=False)  # fixed: not in the checkpoint

    def forward(self, tokens, mask, start: int, memory=None, memory_mask=None, cache=None):
        check_length(start + tokens.shape[1], len(self.positions))
        x = self.dropout(tokens + self.positions[start : start + tokens.shape[1]].to(tokens.dtype))
        for layer, block in enumerate(self.layers):
            x = block(x, mask, memory, memory_mask, cache, layer)
        return x


class TransformerSeq2SeqModel(EncoderDecoder):
    default_decoder_start = "bos_token_id"
    config_class = TransformerSeq2SeqConfig

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.target_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.source_embeddings = (self.target_embeddings if config.share_embeddings else
                                  nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id))
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embedding else 1.0
        self.encoder = TransformerStack(config, decoder=False)
        self.decoder = TransformerStack(config, decoder=True)
        init_transformer_weights(self, config.initializer_range)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.target_embeddings  # what the output projection is tied to

    @property
    def ties_output_embeddings(self) -> bool:
        return self.config.tie_word_embeddings

    def encode(self, input_ids, attention_mask=None):
        return self.encoder(self.source_embeddings(input_ids) * self.embed_scale, padding_mask(attention_mask), 0)

    def decode(self, decoder_input_ids, memory, memory_mask, attention_mask=None, cache=None):
        mask, start, _ = self.self_attention_mask(decoder_input_ids.shape[1], attention_mask, cache)
        tokens = self.target_embeddings(decoder_input_ids) * self.embed_scale
        states = self.decoder(tokens, mask, start, memory, memory_mask, cache)
        if cache is not None:
            cache.end()
        return states
