"""GPT-2: a pre-LayerNorm Transformer decoder (Radford et al., 2019).

Token plus learned position embeddings; each block applies LayerNorm before attention and before
the feed-forward network, with residual connections around both; a final LayerNorm follows the
last block. Residual projections are initialised with std 0.02 / sqrt(2 * layers), as in the
paper, so that the residual stream does not grow with depth.

GPT-3 (Brown et al., 2020) is this network with "alternating dense and locally banded sparse
attention patterns in the layers": with ``attention_window`` > 0, layers 1, 3, 5, ... attend only
to the ``attention_window`` most recent tokens (themselves included), the others to all before.
GPT-1 (``gpt1.py``) is a short subclass: LayerNorm after each residual and no final LayerNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nn import (
    Attention,
    FeedForward,
    banded_mask,
    causal_mask,
    document_mask,
    init_transformer_weights,
)
from .base import Backbone, BackboneOutput, TransformerConfig


@dataclass
class GPT2Config(TransformerConfig):
    vocab_size: int = 50257
    hidden_act: str = "gelu_tanh"
    max_position_embeddings: int = 1024
    layer_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    attention_window: int = 0  # > 0: every second layer attends to this many recent tokens (GPT-3)

    def validate(self) -> None:
        super().validate()
        if self.attention_window < 0:
            raise UserError("model.attention_window must be >= 0 (0: every layer dense)")

    def is_local(self, layer: int) -> bool:
        """Whether ``layer`` uses the locally banded pattern (GPT-3: odd layers)."""
        return self.attention_window > 0 and layer % 2 == 1


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = Attention(config.hidden_size, config.num_heads, config.attention_dropout)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask, cache=None, layer: int = 0):
        x = x + self.dropout(self.attention(self.attention_norm(x), mask, cache=cache, layer=layer))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class GPT2Model(Backbone):
    config_class = GPT2Config
    block_class = GPT2Block
    final_layer_norm = True  # pre-LN needs a LayerNorm after the last block; post-LN (GPT-1) does not
    causal = True
    supports_cache = True  # forward(..., cache=KVCache) for incremental decoding
    supports_layerdrop = True

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.token = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(self.block_class(config) for _ in range(config.num_layers))
        self.final_norm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if self.final_layer_norm
                           else nn.Identity())
        init_transformer_weights(self, config.initializer_range)
        self.init_residuals()

    def init_residuals(self) -> None:
        config = self.config
        residual_std = config.initializer_range / math.sqrt(2 * config.num_layers)
        for block in self.blocks:
            nn.init.normal_(block.attention.out.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.ffn.down.weight, mean=0.0, std=residual_std)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.token

    @property
    def ties_output_embeddings(self) -> bool:
        return self.config.tie_word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # GPT-2 has no segments; accepted and unused
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        cache=None,
    ) -> BackboneOutput:
        """``cache`` (a ``generation.KVCache``): ``input_ids`` continue the cached tokens and are
        appended to the cache; ``attention_mask`` covers the new (or cached + new) tokens and
        ``position_ids`` should be given for left-padded rows (default: the cache slots)."""
        length = input_ids.shape[1]
        # a static cache's fill level lives on the device; its size bounds the positions instead
        end = length if cache is None else cache.max_len if cache.static else cache.length + length
        if end > self.config.max_position_embeddings:
            raise UserError(
                f"sequence of {end} tokens is longer than the model's context "
                f"({self.config.max_position_embeddings}); truncate the input"
            )
        if cache is not None:
            mask = cache.begin(length, attention_mask)
            slots, keys = cache.query_slots, cache.num_keys
        else:
            mask = (document_mask(document_ids, attention_mask, causal=True) if document_ids is not None
                    else causal_mask(length, attention_mask))
            slots, keys = torch.arange(length, device=input_ids.device), length
        if position_ids is None:
            position_ids = slots[None, :]
        x = self.dropout(self.token(input_ids) + self.position(position_ids))
        local = mask
        window = self.config.attention_window
        if window and keys > window:  # fewer keys: the band is the whole causal mask
            local = banded_mask(mask, window, slots, keys)
        states = [x] if output_hidden_states else None
        for layer, (block, run) in enumerate(zip(self.blocks, self.layers_to_run(len(self.blocks)))):
            if run:
                x = block(x, local if self.config.is_local(layer) else mask, cache, layer)
            if states is not None:
                states.append(x)
        if cache is not None:
            cache.end()
        x = self.final_norm(x)
        if states is not None:
            states[-1] = x  # as in GPT-2 references: the last state is after the final norm
        return BackboneOutput(x, None, tuple(states) if states is not None else None)
