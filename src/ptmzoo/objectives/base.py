"""What an objective is: a corruption applied in the collator, a head, and the head's loss.

An objective never touches a backbone. Its ``prepare`` runs in the data pipeline on NumPy
arrays, drawing randomness from generators seeded by each sample's ``(index, epoch)`` key (so
masks are re-drawn every epoch unless masking is static, and never depend on batch layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..config import Config
from ..data.packing import sample_rng
from ..data.tokenizers import Tokenizer
from ..errors import UserError
from ..models.base import Backbone

OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    OBJECTIVES[cls.name] = cls
    return cls


@dataclass
class NoOptions(Config):
    pass


class Objective:
    name: ClassVar[str]
    head_kind: ClassVar[str]
    Options: ClassVar[type[Config]] = NoOptions
    needs_sentence_pairs: ClassVar[bool] = False
    direction: ClassVar[str] = "any"  # "bidirectional" (encoders), "causal" (decoders) or "any"
    salt: ClassVar[int] = 0  # separates this objective's random stream from the others'

    def __init__(self, options: Config, tokenizer: Tokenizer, seed: int = 0):
        self.options = options
        self.tokenizer = tokenizer
        self.seed = seed

    def check_backbone(self, backbone: Backbone, preset: str) -> None:
        if self.direction == "bidirectional" and backbone.causal:
            raise UserError(f"objective '{self.name}' needs a bidirectional encoder, but '{preset}' is a "
                            "left-to-right decoder; use 'clm' for decoders")
        if self.direction == "causal" and not backbone.causal:
            raise UserError(f"objective '{self.name}' needs a left-to-right decoder, but '{preset}' is "
                            "a bidirectional encoder; use 'mlm' for encoders")

    def check_objectives(self, objectives: list[Objective]) -> None:
        """Raise a UserError when this objective cannot run with the others of the recipe."""

    def check_corpus(self, corpus) -> None:
        """Raise a UserError when the corpus (a ``ShardedCorpus``) lacks what this objective needs."""

    def head_options(self) -> dict[str, Any]:
        return {}

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return sample_rng(self.seed, epoch, index, self.salt)

    def prepare(self, batch: dict[str, np.ndarray], keys: list[tuple[int, int]]) -> None:
        """Corrupt inputs and add this objective's targets to ``batch`` (in place)."""


def build_objectives(spec: dict[str, dict] | list[str], tokenizer: Tokenizer, seed: int) -> list[Objective]:
    if isinstance(spec, list):
        spec = {name: {} for name in spec}
    objectives = []
    for name, options in spec.items():
        if name not in OBJECTIVES:
            raise UserError(f"unknown objective '{name}' (known: {', '.join(sorted(OBJECTIVES))})")
        cls = OBJECTIVES[name]
        objectives.append(cls(cls.Options.from_dict(options or {}, where=f"objectives.{name}."), tokenizer, seed))
    if not objectives:
        raise UserError("no pre-training objective given; name one, e.g. objectives: {mlm: {}}")
    for objective in objectives:
        objective.check_objectives(objectives)
    return objectives


class PretrainCollator:
    """Pads samples into a batch and lets each objective corrupt it and add its targets."""

    def __init__(self, objectives: list[Objective], pad_id: int, entities: bool = True):
        """``entities``: the entity ids of an ERNIE corpus go into the batch (False for a model
        that does not read them)."""
        self.objectives = objectives
        self.pad_id = pad_id
        self.entities = entities

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(s["input_ids"]) for s in samples)
        size = len(samples)
        input_ids = np.full((size, length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((size, length), dtype=np.int64)
        token_type_ids = np.zeros((size, length), dtype=np.int64)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        # packing, segmentation, entity ids (ERNIE)
        for key, fill in (("document_ids", -1), ("position_ids", 0), ("token_marks", 0), ("entity_ids", 0)):
            if key in samples[0] and (key != "entity_ids" or self.entities):
                batch[key] = np.full((size, length), fill, dtype=np.int64)
        for row, sample in enumerate(samples):
            n = len(sample["input_ids"])
            input_ids[row, :n] = sample["input_ids"]
            attention_mask[row, :n] = 1
            for key in ("token_type_ids", "document_ids", "position_ids", "token_marks", "entity_ids"):
                if key in sample and key in batch:
                    batch[key][row, :n] = sample[key]
        for key in ("nsp_labels", "sop_labels"):
            if key in samples[0]:
                batch[key] = np.asarray([s[key] for s in samples], dtype=np.int64)
        keys = [(int(s["epoch"]), int(s["index"])) for s in samples]
        for objective in self.objectives:
            objective.prepare(batch, keys)
        return {name: torch.from_numpy(value) for name, value in batch.items()}
