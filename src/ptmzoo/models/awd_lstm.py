"""AWD-LSTM (Merity, Keskar & Socher, 2018, "Regularizing and Optimizing LSTM Language Models"),
the language model under ULMFiT (Howard & Ruder, 2018) and SiATL.

A word embedding (``hidden_size`` wide, tied to the softmax), then ``num_layers`` LSTM layers:
``lstm_size`` units inside, the last one ``hidden_size`` wide so that its output meets the tied
output embedding. The regularisers of the paper, all off in eval mode:

* embedding dropout (``embed_dropout``): whole words dropped from the embedding matrix;
* variational (locked) dropout on the embeddings (``input_dropout``), between the layers
  (``hidden_dropout``) and on the output (``output_dropout``): one mask per sequence, the same at
  every time step;
* weight drop (``weight_dropout``): DropConnect on every layer's hidden-to-hidden matrix.

The state (h, c) of every layer is carried between calls through ``cache`` (an
``nn.rnn.RecurrentState``): BPTT over a stream of text (``objectives.awd``), generation, and
BPT3C -- ULMFiT's classifier reads a document longer than ``bptt_chunk`` tokens in chunks of that
many, carrying the (detached) state from chunk to chunk.

``hidden_states`` (``output_hidden_states=True``) are the embeddings after input dropout and each
layer's output before dropout (TAR's input); ``last_hidden_state`` is the last layer's output after
the output dropout (what the softmax, AR and task heads read).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ..nn.rnn import LockedDropout, LSTMLayer, RecurrentState, embedding_dropout
from .base import Backbone, BackboneOutput


@dataclass
class AwdLstmConfig(Config):
    vocab_size: int = 33278  # WikiText-2's
    hidden_size: int = 400  # embedding and output width (tied)
    lstm_size: int = 1150
    num_layers: int = 3
    embed_dropout: float = 0.1
    input_dropout: float = 0.65
    hidden_dropout: float = 0.2
    output_dropout: float = 0.4
    weight_dropout: float = 0.5
    tie_weights: bool = True
    bptt_chunk: int = 0  # BPT3C: > 0 reads longer inputs in chunks of this many tokens (ULMFiT: 70)
    pad_token_id: int = 0
    initializer_range: float = 0.1  # embeddings uniform(-r, r) as in the paper (and the std of new heads)

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "lstm_size", "num_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        for name in ("embed_dropout", "input_dropout", "hidden_dropout", "output_dropout", "weight_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"model.{name} must be in [0, 1)")
        if self.bptt_chunk < 0:
            raise UserError("model.bptt_chunk must be >= 0 (0: read every input at once)")


class AwdLstmModel(Backbone):
    config_class = AwdLstmConfig
    inputs = ("input_ids", "attention_mask")
    causal = True
    supports_cache = True  # forward(..., cache=RecurrentState): continue from a carried state
    recurrent = True

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        sizes = [config.hidden_size] + [config.lstm_size] * (config.num_layers - 1) + [config.hidden_size]
        self.layers = nn.ModuleList(LSTMLayer(sizes[i], sizes[i + 1], weight_dropout=config.weight_dropout)
                                    for i in range(config.num_layers))
        self.input_dropout = LockedDropout(config.input_dropout)
        self.hidden_dropout = LockedDropout(config.hidden_dropout)
        self.output_dropout = LockedDropout(config.output_dropout)
        nn.init.uniform_(self.embedding.weight, -config.initializer_range, config.initializer_range)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.embedding

    @property
    def max_length(self) -> int | None:
        return None  # no position table: any length

    @property
    def ties_output_embeddings(self) -> bool:
        return self.config.tie_weights

    def initial_state(self, batch: int) -> RecurrentState:
        return RecurrentState(len(self.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, cache: RecurrentState | None = None) -> BackboneOutput:
        """``cache``: the state to start from, replaced by the final state (padding skipped: the state
        after each row's last real token). Without it each row starts from zeros."""
        chunk = self.config.bptt_chunk
        if not chunk or input_ids.shape[1] <= chunk:
            return self._run(input_ids, attention_mask, output_hidden_states, cache)
        state = cache if cache is not None else self.initial_state(input_ids.shape[0])
        parts = []
        for start in range(0, input_ids.shape[1], chunk):  # BPT3C
            mask = None if attention_mask is None else attention_mask[:, start : start + chunk]
            parts.append(self._run(input_ids[:, start : start + chunk], mask, output_hidden_states, state))
            state.detach()
        hidden = None
        if output_hidden_states:
            hidden = tuple(torch.cat([p.hidden_states[i] for p in parts], 1) for i in range(len(parts[0].hidden_states)))
        return BackboneOutput(torch.cat([p.last_hidden_state for p in parts], 1), None, hidden)

    def _run(self, input_ids, attention_mask, output_hidden_states, cache) -> BackboneOutput:
        x = self.input_dropout(embedding_dropout(self.embedding, input_ids, self.config.embed_dropout, self.training))
        states = [x] if output_hidden_states else None
        # the padding mask matters only for the state handed on (right padding follows the real tokens)
        mask = attention_mask if cache is not None else None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            raw, final = layer(x, None if cache is None else cache.layers[i], mask)
            if cache is not None:
                cache.layers[i] = final
            if states is not None:
                states.append(raw)
            x = self.output_dropout(raw) if i == last else self.hidden_dropout(raw)
        return BackboneOutput(x, None, tuple(states) if states is not None else None)
