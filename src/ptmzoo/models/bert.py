"""BERT: a post-LayerNorm Transformer encoder (Devlin et al., 2019).

Embeddings are the sum of token, learned position and segment (token type) embeddings, then
LayerNorm and dropout. Each layer is self-attention and a feed-forward network, each followed by
dropout, a residual connection and LayerNorm ("post-LN"). The pooler maps the [CLS] state through
a dense layer and tanh; next-sentence prediction and CLS classification read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import FeedForward, SelfAttention, document_mask, init_transformer_weights, padding_mask
from .base import Backbone, BackboneOutput, TransformerConfig


@dataclass
class BertConfig(TransformerConfig):
    type_vocab_size: int = 2
    pad_token_id: int = 0
    add_pooler: bool = True


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        length = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device)[None, :]
        x = self.word(input_ids) + self.position(position_ids)
        if token_type_ids is None:
            x = x + self.token_type.weight[0]
        else:
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config.hidden_size, config.num_heads, config.attention_dropout)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x, mask):
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden):
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(Backbone):
    config_class = BertConfig

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_layers))
        self.pooler = BertPooler(config) if config.add_pooler else None
        init_transformer_weights(self, config.initializer_range)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    @property
    def has_pooler(self) -> bool:
        return self.pooler is not None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        document_ids: torch.Tensor | None = None,
    ) -> BackboneOutput:
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = document_mask(document_ids, attention_mask) if document_ids is not None else padding_mask(attention_mask)
        states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, mask)
            if states is not None:
                states.append(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BackboneOutput(x, pooled, tuple(states) if states is not None else None)
