"""SpanBERT's span boundary objective (Joshi et al., 2020): predict each token of a masked span
from the two tokens just outside the span and the token's position inside it,

    h = LayerNorm(GeLU(W2 . LayerNorm(GeLU(W1 . [x_left; x_right; p_offset]))))

then the vocabulary projection tied to the input embeddings. Its loss is added to MLM's (the
model sums the heads' mean losses). The spans are those of ``mlm`` with ``masking: span``, which
records every masked token's boundaries as ``span_left`` / ``span_right``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import Head
from ..nn.losses import linear_cross_entropy
from .base import Objective
from .mlm import MaskedLM


@dataclass
class SBOOptions(Config):
    max_offset: int = 32  # rows of the relative position embedding; longer spans share the last

    def validate(self) -> None:
        if self.max_offset < 1:
            raise UserError("objectives.sbo.max_offset must be at least 1")


class SpanBoundaryHead(Head):
    kind = "sbo"
    target_key = "sbo_labels"

    def __init__(self, backbone, max_offset: int = 32, **options):
        super().__init__(backbone, max_offset=max_offset, **options)
        config = backbone.config
        hidden, embed = config.hidden_size, backbone.input_embeddings.embedding_dim
        self.offsets = nn.Embedding(max_offset, hidden)
        self.mlp = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=config.layer_norm_eps),
            nn.Linear(hidden, embed), nn.GELU(), nn.LayerNorm(embed, eps=config.layer_norm_eps),
        )
        self.decoder_weight = backbone.input_embeddings.weight  # tied, as in SpanBERT
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=config.initializer_range)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def _transform(self, out, batch, chosen: torch.Tensor) -> torch.Tensor:
        rows, cols = chosen.nonzero(as_tuple=True)
        left, right = batch["span_left"][rows, cols], batch["span_right"][rows, cols]
        hidden = out.last_hidden_state
        offset = (cols - left - 1).clamp(max=self.offsets.num_embeddings - 1)
        return self.mlp(torch.cat([hidden[rows, left], hidden[rows, right], self.offsets(offset)], dim=-1))

    def logits(self, out, batch):
        """Logits at the masked positions of a training batch (it holds the span boundaries);
        None for plain inputs, which have no spans."""
        if "span_left" not in batch:
            return None
        hidden = self._transform(out, batch, batch["span_left"] >= 0)
        return hidden @ self.decoder_weight.T + self.decoder_bias

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        hidden = self._transform(out, batch, chosen)
        return linear_cross_entropy(hidden, self.decoder_weight, self.decoder_bias, labels[chosen])


class SpanBoundary(Objective):
    name = "sbo"
    head = SpanBoundaryHead
    Options = SBOOptions
    direction = "bidirectional"

    def check_objectives(self, objectives) -> None:
        mlm = next((o for o in objectives if isinstance(o, MaskedLM)), None)
        if mlm is None or mlm.options.masking != "span" or objectives.index(mlm) > objectives.index(self):
            raise UserError("objective 'sbo' predicts the spans of SpanBERT's span masking; use "
                            "objectives: {mlm: {masking: span}, sbo: {}} (mlm first)")

    def head_options(self):
        return {"max_offset": self.options.max_offset}

    def prepare(self, batch, keys) -> None:
        batch["sbo_labels"] = np.where(batch["span_left"] >= 0, batch["mlm_labels"], -100)


