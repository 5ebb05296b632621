"""A BiLSTM sentence encoder: the student of Distilled BiLSTM (Tang et al., 2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks").

Token embeddings feed one (or more) bidirectional LSTM layers; the last state of the forward
direction and the first state of the backward direction (each over the real tokens only) are
concatenated and passed through a fully connected layer with ReLU -- the pooled sentence vector
that a classification head reads (``pooler_output``, ``hidden_size`` wide). Every token's two
directions go through the same layer, so ``last_hidden_state`` has that width too. The encoder
reads the token ids of the teacher's tokenizer, so a teacher and its BiLSTM student share one
input pipeline; it has no positions, so ``max_position_embeddings`` only bounds the input length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import Config
from ..errors import UserError
from .base import Backbone, BackboneOutput


@dataclass
class BiLSTMConfig(Config):
    vocab_size: int = 30522
    embedding_size: int = 300
    lstm_size: int = 150  # per direction
    num_layers: int = 1
    hidden_size: int = 200  # the ReLU layer over the concatenated directions: what heads read
    hidden_dropout: float = 0.1
    pad_token_id: int = 0
    max_position_embeddings: int = 512  # the longest input
    initializer_range: float = 0.02

    def validate(self) -> None:
        for name in ("vocab_size", "embedding_size", "lstm_size", "num_layers", "hidden_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        if not 0 <= self.hidden_dropout < 1:
            raise UserError("model.hidden_dropout must be in [0, 1)")


class BiLSTMModel(Backbone):
    config_class = BiLSTMConfig
    inputs = ("input_ids", "attention_mask")

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.lstm = nn.LSTM(config.embedding_size, config.lstm_size, num_layers=config.num_layers,
                            batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.dense = nn.Linear(2 * config.lstm_size, config.hidden_size)
        nn.init.normal_(self.embeddings.weight, std=config.initializer_range)
        with torch.no_grad():
            self.embeddings.weight[config.pad_token_id].zero_()

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    @property
    def has_pooler(self) -> bool:
        return True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> BackboneOutput:
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise UserError(f"sequence of {input_ids.shape[1]} tokens is longer than the model's limit "
                            f"({self.config.max_position_embeddings}); truncate the input")
        x = self.dropout(self.embeddings(input_ids))
        if attention_mask is None:
            lengths = torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long)
        else:
            lengths = attention_mask.sum(-1).clamp(min=1).long().cpu()  # real tokens are at the start (right padding)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, (last, _) = self.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
        # last: [layers * 2, B, lstm_size]; the top layer's forward (after the last real token) and
        # backward (after reading back to the first token) states
        sentence = torch.cat([last[-2], last[-1]], dim=-1)
        pooled = torch.relu(self.dense(self.dropout(sentence)))
        tokens = torch.relu(self.dense(self.dropout(states)))
        hidden = (self.embeddings(input_ids), tokens) if output_hidden_states else None
        return BackboneOutput(tokens, pooled, hidden)
