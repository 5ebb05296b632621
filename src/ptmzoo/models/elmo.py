"""ELMo (Peters et al., 2018, "Deep contextualized word representations"): a bidirectional LSTM
language model over a character CNN, as AllenNLP's ``_ElmoBiLm``.

1. Character CNN (Kim et al., 2016): each token's characters (``char_ids`` [B, L, max_chars], built
   by ``data.derived``) are embedded, convolved with filters of several widths, max-pooled over
   the characters and passed through ReLU; the concatenated filters go through highway layers
   (Srivastava et al., 2015) and a linear projection to ``projection`` = ``hidden_size / 2`` units:
   a context-free token vector.
2. Two stacks of ``num_layers`` LSTM layers, one reading left to right (forward LM), one right to
   left (backward LM), each with ``lstm_size`` cells projected to ``projection`` units, with a
   residual connection around every layer but the first and dropout between layers.

The representations (``hidden_states``) are the token layer -- duplicated, [x; x], to the width of
the others as in AllenNLP -- and each layer's [forward; backward] states, ``hidden_size`` wide; the
downstream scalar mix (``--layers scalar_mix``) weights these ``num_layers + 1`` layers. The
language-model heads (``objectives.bilm``) read the top forward and backward states.

Not reproduced: AllenNLP's cell and projection clipping (``nn.LSTM`` has neither) -- and ``nn.LSTM``
has two bias vectors per cell where AllenNLP has one, which adds ``4 * lstm_size`` parameters per
layer and direction to the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..data.derived import CHAR_VOCAB, MAX_CHARS
from ..errors import UserError
from ..nn.rnn import LSTMLayer
from .base import Backbone, BackboneOutput

ELMO_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]  # [width, count]


@dataclass
class ElmoConfig(Config):
    vocab_size: int = 30522  # the softmax's (the LM heads'); the network itself reads characters
    hidden_size: int = 1024  # representation width: forward and backward projections, concatenated
    lstm_size: int = 4096
    num_layers: int = 2
    char_vocab_size: int = CHAR_VOCAB
    char_embedding_size: int = 16
    max_chars: int = MAX_CHARS
    filters: list[list[int]] = field(default_factory=lambda: [list(f) for f in ELMO_FILTERS])
    num_highway: int = 2
    dropout: float = 0.1
    residual: bool = True
    pad_token_id: int = 0
    initializer_range: float = 0.02  # the softmax and task heads

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "lstm_size", "num_layers", "char_embedding_size"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        if self.hidden_size % 2:
            raise UserError(f"model.hidden_size ({self.hidden_size}) must be even: forward and backward halves")
        if self.max_chars < 3:
            raise UserError("model.max_chars must be at least 3 (begin, a character, end of word)")
        if not self.filters or any(len(f) != 2 or f[0] < 1 or f[1] < 1 or f[0] > self.max_chars for f in self.filters):
            raise UserError("model.filters must be [width, count] pairs with 1 <= width <= max_chars")
        if self.num_highway < 0 or not 0 <= self.dropout < 1:
            raise UserError("model.num_highway must be >= 0 and model.dropout in [0, 1)")

    @property
    def projection(self) -> int:
        return self.hidden_size // 2


class Highway(nn.Module):
    """y = g * x + (1 - g) * relu(W_h x), g = sigmoid(W_g x); the gates start open to x (bias 1)."""

    def __init__(self, size: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(size, 2 * size) for _ in range(num_layers))
        for layer in self.layers:
            nn.init.zeros_(layer.bias)
            nn.init.ones_(layer.bias[size:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            nonlinear, gate = layer(x).chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * F.relu(nonlinear)
        return x


class CharacterEncoder(nn.Module):
    """Characters of each token [N, max_chars] -> a token vector [N, projection]."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.char_vocab_size, config.char_embedding_size)
        self.convolutions = nn.ModuleList(nn.Conv1d(config.char_embedding_size, count, width)
                                          for width, count in config.filters)
        width = sum(count for _, count in config.filters)
        self.highway = Highway(width, config.num_highway)
        self.projection = nn.Linear(width, config.projection)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(char_ids).transpose(1, 2)  # [N, embedding, chars]
        pooled = torch.cat([F.relu(conv(x).max(dim=-1).values) for conv in self.convolutions], dim=-1)
        return self.projection(self.highway(pooled))


class ElmoLayer(nn.Module):
    """One layer of both language models (a layer group for discriminative rates and unfreezing)."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        size = config.projection
        self.forward_lstm = LSTMLayer(size, config.lstm_size, proj_size=size)
        self.backward_lstm = LSTMLayer(size, config.lstm_size, proj_size=size)


class ElmoModel(Backbone):
    config_class = ElmoConfig
    # input_ids are not read by the network: the heads see the token layout (and grouped inputs) through them
    inputs = ("char_ids", "attention_mask", "input_ids")
    input_rank = 3  # char_ids [batch, length, characters]

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        self.characters = CharacterEncoder(config)
        self.layers = nn.ModuleList(ElmoLayer(config) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)

    @property
    def input_embeddings(self) -> nn.Embedding:
        raise UserError("ELMo reads characters: it has no token embedding matrix (no --init-embeddings, no "
                        "added tokens)")

    @property
    def derived_inputs(self) -> dict:
        return {"char_ids": {"max_chars": self.config.max_chars}}  # data.derived builds them from the ids

    @property
    def max_length(self) -> int | None:
        return None

    @property
    def ties_output_embeddings(self) -> bool:
        return False

    def forward(self, char_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None, output_hidden_states: bool = False) -> BackboneOutput:
        batch, length, chars = char_ids.shape
        if chars != self.config.max_chars:
            raise UserError(f"char_ids have {chars} characters per token, the model reads {self.config.max_chars}")
        tokens = self.characters(char_ids.reshape(batch * length, chars)).view(batch, length, -1)
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=char_ids.device)
        keep = attention_mask[..., None].to(tokens.dtype)
        tokens = tokens * keep
        states = [torch.cat([tokens, tokens], dim=-1)]
        forward_in = backward_in = tokens
        for i, layer in enumerate(self.layers):
            forward_out, _ = layer.forward_lstm(forward_in, mask=attention_mask, final_state=False)
            backward_out, _ = layer.backward_lstm(backward_in, mask=attention_mask, reverse=True, final_state=False)
            if self.config.residual and i > 0:
                forward_out, backward_out = forward_out + forward_in, backward_out + backward_in
            states.append(torch.cat([forward_out, backward_out], dim=-1) * keep)
            forward_in, backward_in = self.dropout(forward_out), self.dropout(backward_out)
        return BackboneOutput(states[-1], None, tuple(states) if output_hidden_states else None)
