"""Sentence-pair objectives on the pooled [CLS] state (a linear classifier).

* Next-sentence prediction (BERT): is segment B the continuation of segment A (label 0) or a
  random segment from another document (label 1)?
* Sentence-order prediction (ALBERT): are two consecutive segments in their order (label 0) or
  swapped (label 1)? Both come from one document, so topic gives nothing away.
  With ``classes: 3`` it is StructBERT's sentence structural objective: segment B follows A
  (label 0), precedes it (1), or comes from another document (2), a third of the pairs each.

The pairs are built by ``data.packing.SentencePairs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import SequenceHead
from .base import Objective


@dataclass
class NSPOptions(Config):
    random_next_prob: float = 0.5

    def validate(self) -> None:
        if not 0 < self.random_next_prob < 1:
            raise UserError("random_next_prob must be between 0 and 1 (the share of label-1 pairs)")


class NSPHead(SequenceHead):
    kind = "nsp"
    target_key = "nsp_labels"

    def __init__(self, backbone, classes: int = 2, **options):
        super().__init__(backbone, **({"classes": classes} if classes != 2 else {}), **options)
        self.classifier = nn.Linear(backbone.config.hidden_size, classes)
        nn.init.normal_(self.classifier.weight, std=backbone.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def logits(self, out, batch):
        return self.classifier(out.pooler_output)

    def loss_sum(self, out, batch):
        return F.cross_entropy(self.logits(out, batch).float(), batch[self.target_key], reduction="sum")


class SOPHead(NSPHead):
    kind = "sop"
    target_key = "sop_labels"


class NextSentencePrediction(Objective):
    name = "nsp"
    head = NSPHead
    Options = NSPOptions
    samples = "sentence_pairs"
    direction = "bidirectional"

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not backbone.has_pooler:
            raise UserError(f"objective '{self.name}' reads the pooled [CLS] state, but '{preset}' has no pooler "
                            f"(set model.add_pooler=true or drop {self.name})")

    def sample_options(self) -> dict:
        """How ``data.packing.SentencePairs`` builds this objective's pairs."""
        return {"task": self.name, "random_next_prob": self.options.random_next_prob}


@dataclass
class SOPOptions(NSPOptions):
    classes: int = 2  # 3: StructBERT's next / previous / other-document pairs, a third each

    def validate(self) -> None:
        super().validate()
        if self.classes not in (2, 3):
            raise UserError("objectives.sop.classes must be 2 (ALBERT: in order / swapped) or 3 (StructBERT: "
                            "next / previous / random document)")
        if self.classes == 3 and self.random_next_prob != 0.5:
            raise UserError("objectives.sop.random_next_prob is not used with classes: 3 (the three kinds of "
                            "pairs are equally likely); leave it out")


class SentenceOrderPrediction(NextSentencePrediction):
    name = "sop"
    head = SOPHead
    Options = SOPOptions

    def head_options(self):
        return {"classes": 3} if self.options.classes == 3 else {}

    def sample_options(self) -> dict:
        return {**super().sample_options(), "classes": self.options.classes}


