"""ELECTRA's replaced-token detection. The corruption is MLM masking (by default 15% of the
tokens, 85% of those [MASK] and the rest left as they are, as in ELECTRA's release) for the
generator; ``rtd_labels`` marks the tokens the discriminator classifies (every real token,
specials included) and is filled with replaced/original by ``models.electra.ElectraModel`` once
the generator has sampled. The head is the discriminator's: dense -> activation -> one logit per
token; its loss is lambda (``weight``, 50) times the summed binary cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.electra import ElectraConfig
from ..models.model import Head, register_head
from ..nn import activation
from .base import register_objective
from .mlm import MaskedLM, MLMOptions


@dataclass
class RTDOptions(MLMOptions):
    mask_token_prob: float = 0.85
    random_token_prob: float = 0.0
    weight: float = 50.0  # lambda: the discriminator loss's weight against the generator's

    def validate(self) -> None:
        super().validate()
        if self.weight <= 0:
            raise UserError("objectives.rtd.weight must be positive")


@register_objective
class ReplacedTokenDetection(MaskedLM):
    name = "rtd"
    head_kind = "rtd"
    Options = RTDOptions

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not isinstance(backbone.config, ElectraConfig):
            raise UserError(f"objective 'rtd' needs a generator and a discriminator, but '{preset}' is a single "
                            "encoder; use an ELECTRA preset (electra-tiny, electra-small, electra-base)")

    def head_options(self):
        return {"weight": self.options.weight}

    def prepare(self, batch, keys) -> None:
        super().prepare(batch, keys)
        batch["rtd_labels"] = np.where(batch["attention_mask"] == 1, 0, -100)  # filled in by the model


@register_head
class RTDHead(Head):
    kind = "rtd"
    target_key = "rtd_labels"

    def __init__(self, backbone, weight: float = 50.0, **options):
        super().__init__(backbone, weight=weight, **options)
        config = backbone.config
        self.weight = weight
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.classifier = nn.Linear(config.hidden_size, 1)
        for layer in (self.dense, self.classifier):
            nn.init.normal_(layer.weight, std=config.initializer_range)
            nn.init.zeros_(layer.bias)

    def logits(self, out, batch):
        """One logit per token: above 0 means replaced."""
        return self.classifier(self.act(self.dense(out.last_hidden_state))).squeeze(-1)

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        logits = self.classifier(self.act(self.dense(out.last_hidden_state[chosen]))).squeeze(-1)
        return self.weight * F.binary_cross_entropy_with_logits(logits.float(), labels[chosen].float(),
                                                                reduction="sum")
