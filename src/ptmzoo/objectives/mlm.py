"""Masked language modelling (BERT): 15% of the tokens are chosen for prediction; of those 80%
become [MASK], 10% a random token and 10% stay as they are. Special tokens and padding are never
chosen. As in the original BERT data pipeline, the number chosen per sequence is exact
(round(15% of the maskable tokens), at least one), not a Bernoulli draw per token.

The head (dense -> activation -> LayerNorm -> vocabulary projection tied to the input
embeddings, plus a bias) is evaluated only at the chosen positions during training: the
vocabulary projection is the largest matrix product of a small model. Its loss goes through
``linear_cross_entropy``, which never holds the logits of more than a chunk of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import Head, register_head
from ..nn import activation
from ..nn.losses import linear_cross_entropy
from .base import Objective, register_objective


@dataclass
class MLMOptions(Config):
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    dynamic: bool = True  # False: the same masks every epoch (BERT's static masking)

    def validate(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise UserError("objectives.mlm.mask_prob must be between 0 and 1")
        if self.mask_token_prob < 0 or self.random_token_prob < 0 or self.mask_token_prob + self.random_token_prob > 1:
            raise UserError("objectives.mlm: mask_token_prob + random_token_prob must be within [0, 1]")


@register_objective
class MaskedLM(Objective):
    name = "mlm"
    head_kind = "mlm"
    Options = MLMOptions
    direction = "bidirectional"
    salt = 1

    def __init__(self, options: MLMOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        if tokenizer.mask_id is None:
            raise UserError("the tokenizer has no mask token; MLM needs one (train a wordpiece/char tokenizer)")
        self.special_ids = np.asarray(tokenizer.special_ids, dtype=np.int64)
        self.replacement_ids = np.setdiff1d(np.arange(tokenizer.vocab_size), self.special_ids)

    def prepare(self, batch, keys) -> None:
        ids = batch["input_ids"]
        maskable = ~np.isin(ids, self.special_ids) & (batch["attention_mask"] == 1)
        labels = np.full_like(ids, -100)
        opts = self.options
        for row, (epoch, index) in enumerate(keys):
            rng = self.rng(epoch if opts.dynamic else 0, index)
            candidates = np.flatnonzero(maskable[row])
            if len(candidates) == 0:
                continue
            count = max(1, int(round(len(candidates) * opts.mask_prob)))
            chosen = np.sort(rng.choice(candidates, size=count, replace=False))
            labels[row, chosen] = ids[row, chosen]
            draw = rng.random(count)
            to_mask = chosen[draw < opts.mask_token_prob]
            to_random = chosen[(draw >= opts.mask_token_prob) & (draw < opts.mask_token_prob + opts.random_token_prob)]
            ids[row, to_mask] = self.tokenizer.mask_id
            ids[row, to_random] = self.replacement_ids[rng.integers(len(self.replacement_ids), size=len(to_random))]
        batch["mlm_labels"] = labels


@register_head
class MLMHead(Head):
    kind = "mlm"
    target_key = "mlm_labels"

    def __init__(self, backbone, **options):
        super().__init__(backbone, **options)
        config = backbone.config
        hidden = config.hidden_size
        self.dense = nn.Linear(hidden, hidden)
        self.act = activation(config.hidden_act)
        self.norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(hidden, config.vocab_size)
        self.decoder.weight = backbone.input_embeddings.weight  # tied
        nn.init.normal_(self.dense.weight, std=config.initializer_range)
        nn.init.zeros_(self.dense.bias)
        nn.init.zeros_(self.decoder.bias)

    def _transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden)))

    def logits(self, out, batch):
        return self.decoder(self._transform(out.last_hidden_state))

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        hidden = self._transform(out.last_hidden_state[chosen])
        return linear_cross_entropy(hidden, self.decoder.weight, self.decoder.bias, labels[chosen])
