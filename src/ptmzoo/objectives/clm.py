"""Causal language modelling (GPT): predict every next token.

The labels are the input ids (padding excluded); the head shifts them itself. The loss goes
through ``linear_cross_entropy``: the logits of a whole batch (batch x length x vocabulary) are
never materialised.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..models.model import Head
from ..nn.losses import linear_cross_entropy
from .base import Objective


class LMHead(Head):
    kind = "clm"
    target_key = "lm_labels"
    perplexity = True

    def __init__(self, backbone, **options):
        super().__init__(backbone, **options)
        config = backbone.config
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if backbone.ties_output_embeddings:
            self.decoder.weight = backbone.input_embeddings.weight
        else:
            nn.init.normal_(self.decoder.weight, std=config.initializer_range)

    def logits(self, out, batch):
        return self.decoder(out.last_hidden_state)

    def count_targets(self, batch):
        return (batch[self.target_key][:, 1:] != -100).sum()

    def loss_sum(self, out, batch):
        return linear_cross_entropy(out.last_hidden_state[:, :-1], self.decoder.weight, None,
                                    batch[self.target_key][:, 1:])


class CausalLM(Objective):
    name = "clm"
    head = LMHead
    direction = "causal"

    def prepare(self, batch, keys) -> None:
        batch["lm_labels"] = np.where(batch["attention_mask"] == 1, batch["input_ids"], -100)


