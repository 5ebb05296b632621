"""GPT-2: a pre-LayerNorm Transformer decoder (Radford et al., 2019).

Token plus learned position embeddings; each block applies LayerNorm before attention and before
the feed-forward network, with residual connections around both; a final LayerNorm follows the
last block. Residual projections are initialised with std 0.02 / sqrt(2 * layers), as in the
paper, so that the residual stream does not grow with depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nn import FeedForward, SelfAttention, causal_mask, document_mask, init_transformer_weights
from .base import Backbone, BackboneOutput, TransformerConfig


@dataclass
class GPT2Config(TransformerConfig):
    vocab_size: int = 50257
    hidden_act: str = "gelu_tanh"
    max_position_embeddings: int = 1024
    layer_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SelfAttention(config.hidden_size, config.num_heads, config.attention_dropout)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask, cache=None, layer: int = 0):
        x = x + self.dropout(self.attention(self.attention_norm(x), mask, cache, layer))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class GPT2Model(Backbone):
    config_class = GPT2Config
    causal = True
    supports_cache = True  # forward(..., cache=KVCache) for incremental decoding

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.token = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(GPT2Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        init_transformer_weights(self, config.initializer_range)
        residual_std = config.initializer_range / math.sqrt(2 * config.num_layers)
        for block in self.blocks:
            nn.init.normal_(block.attention.out.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.ffn.down.weight, mean=0.0, std=residual_std)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.token

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # GPT-2 has no segments; accepted and unused
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        document_ids: torch.Tensor | None = None,
        cache=None,
    ) -> BackboneOutput:
        """``cache`` (a ``generation.KVCache``): ``input_ids`` continue the cached tokens and are
        appended to the cache; ``attention_mask`` covers the new (or cached + new) tokens and
        ``position_ids`` should be given for left-padded rows (default: the cache slots)."""
        length = input_ids.shape[1]
        start = cache.length if cache is not None else 0
        if start + length > self.config.max_position_embeddings:
            raise UserError(
                f"sequence of {start + length} tokens is longer than the model's context "
                f"({self.config.max_position_embeddings}); truncate the input"
            )
        if position_ids is None:
            position_ids = torch.arange(start, start + length, device=input_ids.device)[None, :]
        x = self.dropout(self.token(input_ids) + self.position(position_ids))
        if cache is not None:
            mask = cache.begin(length, attention_mask)
        elif document_ids is not None:
            mask = document_mask(document_ids, attention_mask, causal=True)
        else:
            mask = causal_mask(length, attention_mask)
        states = [x] if output_hidden_states else None
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, cache, layer)
            if states is not None:
                states.append(x)
        if cache is not None:
            cache.end()
        x = self.final_norm(x)
        if states is not None:
            states[-1] = x  # as in GPT-2 references: the last state is after the final norm
        return BackboneOutput(x, None, tuple(states) if states is not None else None)
