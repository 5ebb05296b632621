"""ELMo's bidirectional language model (Peters et al., 2018, eq. 1): the forward LM predicts each
token from the tokens before it, the backward LM from the tokens after it, and both share the
token representation and -- the "tied" softmax -- one output layer.

The head reads the top layer's [forward; backward] states: the forward half at position t scores
token t + 1, the backward half scores token t - 1 (within each block, framed by [CLS] ... [SEP] as
ELMo's sentences are by <S> ... </S>). The loss is the sum over both directions, so the reported
mean is the mean of the forward and backward negative log-likelihoods; the softmax over a large
vocabulary is chunked (``nn.losses.linear_cross_entropy``: no [tokens, vocabulary] logits stored).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..models.model import Head
from ..nn.losses import linear_cross_entropy
from .base import Objective


class BiLMHead(Head):
    kind = "bilm"
    perplexity = True  # mean NLL over both directions
    target_key = "lm_labels"

    def __init__(self, backbone, **options):
        super().__init__(backbone, **options)
        config = backbone.config
        self.dropout = nn.Dropout(config.dropout)
        self.softmax = nn.Linear(config.hidden_size // 2, config.vocab_size)  # one for both directions
        nn.init.normal_(self.softmax.weight, std=config.initializer_range)
        nn.init.zeros_(self.softmax.bias)

    def directions(self, out) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(out.last_hidden_state).chunk(2, dim=-1)

    def logits(self, out, batch):
        """[B, L, 2, vocab]: the forward LM's scores of the next token, the backward LM's of the previous one."""
        forward, backward = self.directions(out)
        return torch.stack([self.softmax(forward), self.softmax(backward)], dim=2)

    def targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward targets (token t + 1 at position t) and backward ones (token t - 1 at position t),
        each where both the predicting and the predicted position hold a token."""
        labels = batch[self.target_key]
        both = (labels[:, 1:] != -100) & (labels[:, :-1] != -100)
        return labels[:, 1:].masked_fill(~both, -100), labels[:, :-1].masked_fill(~both, -100)

    def count_targets(self, batch):
        return 2 * (self.targets(batch)[0] != -100).sum()

    def loss_sum(self, out, batch):
        forward, backward = self.directions(out)
        next_tokens, previous_tokens = self.targets(batch)
        weight, bias = self.softmax.weight, self.softmax.bias
        return (linear_cross_entropy(forward[:, :-1], weight, bias, next_tokens)
                + linear_cross_entropy(backward[:, 1:], weight, bias, previous_tokens))


class BidirectionalLM(Objective):
    name = "bilm"
    head = BiLMHead
    direction = "bidirectional"

    def prepare(self, batch, keys) -> None:
        batch["lm_labels"] = np.where(batch["attention_mask"] == 1, batch["input_ids"], -100)
