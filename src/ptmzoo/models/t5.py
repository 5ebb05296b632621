"""T5: a pre-LayerNorm Transformer encoder-decoder with relative position buckets
(Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer").

* One token embedding shared by the encoder, the decoder and (v1.0) the output layer; no
  position embedding. Instead each stack learns a scalar per head and relative-distance bucket
  that is added to every attention score: bidirectional buckets in the encoder, past-only in the
  decoder, computed once per pass and shared by all layers of the stack.
* LayerNorm is RMS-style: a scale, no mean subtraction and no bias; no Linear has a bias.
* Attention scores are not divided by sqrt(d): the initialisation takes care of the scale.
* v1.0: ReLU feed-forward, output layer tied to the embeddings with the decoder states scaled
  by d_model ** -0.5. v1.1: gated GELU (GELU(x W0) * x W1), untied output layer, no scaling.
  (``transformers`` 5 always ties T5's output layer and keeps the scaling as a separate switch,
  ``scale_decoder_outputs``, which ptmzoo's config also has.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nn import activation, padding_mask
from ..nn.encdec import Attention, visible_keys, with_bias
from ..nn.positions import RelativePositionBias
from .base import TransformerConfig
from .seq2seq import EncoderDecoder


@dataclass
class T5Config(TransformerConfig):
    vocab_size: int = 32128
    hidden_size: int = 512
    num_layers: int = 6  # encoder layers
    num_decoder_layers: int | None = None  # default: num_layers
    num_heads: int = 8
    head_dim: int = 64  # T5's d_kv; heads x head_dim need not equal hidden_size
    intermediate_size: int = 2048
    hidden_act: str = "relu"
    gated_ffn: bool = False  # v1.1: act(x W0) * (x W1)
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_eps: float = 1e-6
    initializer_range: float = 1.0  # T5's initializer_factor: every init std is multiplied by it
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None  # by d_model ** -0.5 before the output layer; default: when tied
    max_position_embeddings: int = 512  # no position table; the longest input the presets expect
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int | None = None  # default: the pad token, as in T5

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "head_dim", "intermediate_size",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        if self.num_decoder_layers is not None and self.num_decoder_layers < 1:
            raise UserError("model.num_decoder_layers must be at least 1")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"model.{name} must be in [0, 1)")


class T5FeedForward(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        self.up = nn.Linear(hidden, inner, bias=False)
        self.gate = nn.Linear(hidden, inner, bias=False) if config.gated_ffn else None
        self.act = activation(config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.down = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        h = self.act(self.up(x))
        if self.gate is not None:
            h = h * self.gate(x)
        return self.down(self.dropout(h))


class T5Block(nn.Module):
    def __init__(self, config: T5Config, cross: bool):
        super().__init__()

        def norm():
            return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)

        def attention():
            return Attention(config.hidden_size, config.num_heads, config.head_dim, bias=False, scale=1.0,
                             dropout=config.attention_dropout)

        self.self_norm, self.self_attention = norm(), attention()
        self.cross_norm, self.cross_attention = (norm(), attention()) if cross else (None, None)
        self.ffn_norm, self.ffn = norm(), T5FeedForward(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask, memory=None, memory_mask=None, cache=None, layer: int = 0):
        x = x + self.dropout(self.self_attention(self.self_norm(x), mask, cache=cache, layer=layer))
        if self.cross_attention is not None:
            kv = cache.cross(layer, self.cross_attention, memory) if cache is not None else None
            x = x + self.dropout(self.cross_attention(self.cross_norm(x), memory_mask, source=memory, kv=kv))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class T5Stack(nn.Module):
    """The encoder (``decoder=False``) or the decoder: blocks, a final RMS norm, dropout."""

    def __init__(self, config: T5Config, decoder: bool):
        super().__init__()
        layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
        self.relative_bias = RelativePositionBias(config.num_heads, not decoder, config.relative_attention_num_buckets,
                                                  config.relative_attention_max_distance)
        self.blocks = nn.ModuleList(T5Block(config, cross=decoder) for _ in range(layers))
        self.final_norm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask, start: int, keys: int, memory=None, memory_mask=None, cache=None):
        """``mask``: the self-attention mask of the queries at positions start, start + 1, ...
        over ``keys`` key positions; the relative position bias is added to it once here."""
        device = x.device
        bias = self.relative_bias(torch.arange(start, start + x.shape[1], device=device),
                                  torch.arange(keys, device=device)).to(x.dtype)
        mask = with_bias(bias, visible_keys(mask, x.shape[1], keys, device))
        x = self.dropout(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, memory, memory_mask, cache, layer)
        return self.dropout(self.final_norm(x))


class T5Model(EncoderDecoder):
    config_class = T5Config
    max_input_length = None  # relative position buckets: no position table, no length limit

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.hidden_size)
        self.encoder = T5Stack(config, decoder=False)
        self.decoder = T5Stack(config, decoder=True)
        scaled = config.tie_word_embeddings if config.scale_decoder_outputs is None else config.scale_decoder_outputs
        if scaled:
            self.output_scale = config.hidden_size ** -0.5
        self._init_weights()

    def _init_weights(self) -> None:
        """T5's initialisation (Mesh TensorFlow): each projection's std is 1/sqrt(fan-in), the
        queries' also absorb the 1/sqrt(head_dim) that the attention does not apply."""
        config, factor = self.config, self.config.initializer_range
        d, inner = config.hidden_size, config.num_heads * config.head_dim
        for module in self.modules():
            if isinstance(module, nn.RMSNorm):
                nn.init.constant_(module.weight, factor)
            elif isinstance(module, Attention):
                nn.init.normal_(module.q.weight, std=factor * (d * config.head_dim) ** -0.5)
                nn.init.normal_(module.kv.weight, std=factor * d ** -0.5)
                nn.init.normal_(module.out.weight, std=factor * inner ** -0.5)
            elif isinstance(module, T5FeedForward):
                for linear in (module.up, module.gate):
                    if linear is not None:
                        nn.init.normal_(linear.weight, std=factor * d ** -0.5)
                nn.init.normal_(module.down.weight, std=factor * config.intermediate_size ** -0.5)
            elif isinstance(module, RelativePositionBias):
                nn.init.normal_(module.embedding.weight, std=factor * d ** -0.5)
        nn.init.normal_(self.shared.weight, std=factor)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.shared

    @property
    def attention_shape(self) -> tuple[int, int]:
        return self.config.num_heads, self.config.head_dim

    def encode(self, input_ids, attention_mask=None):
        length = input_ids.shape[1]
        return self.encoder(self.shared(input_ids), padding_mask(attention_mask), 0, length)

    def decode(self, decoder_input_ids, memory, memory_mask, attention_mask=None, cache=None):
        mask, start, keys = self.self_attention_mask(decoder_input_ids.shape[1], attention_mask, cache)
        states = self.decoder(self.shared(decoder_input_ids), mask, start, keys, memory, memory_mask, cache)
        if cache is not None:
            cache.end()
        return states
