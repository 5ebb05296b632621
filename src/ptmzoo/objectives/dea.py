"""ERNIE-THU's denoising entity auto-encoder (dEA; Zhang et al., 2019, section 3.4).

Corruption (in the collator, per aligned token-entity pair, seeded per sample and epoch like MLM):
with ``replace_prob`` (5%) the aligned entity is replaced by another entity drawn uniformly from
the whole entity vocabulary, with ``drop_prob`` (15%) the alignment is masked (the entity input
is dropped: id 0), and the rest (80%) are kept. Every aligned position -- corrupted or not --
keeps its original entity as the target (``dea_labels``; -100 elsewhere, so special tokens,
padding and unaligned tokens never count).

Head and loss: the token state goes through dense -> activation -> LayerNorm into the entity
space (as the authors' code does), is scored against the entity embeddings by dot product, and
trained with cross-entropy over a restricted candidate set instead of every entity of the graph:
``candidates: sequence`` (default; the paper: "predict entities based on the given entity
sequence") the entities aligned in the same sequence, ``batch`` all entities aligned anywhere in
the (micro-)batch, as the authors' code does. Per-sequence candidates also keep the loss
independent of how a global batch is split into micro-batches and processes; a sequence with a
single aligned entity then contributes a zero loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import Head
from ..nn import activation
from .base import Objective

CANDIDATES = ("sequence", "batch")


@dataclass
class DEAOptions(Config):
    replace_prob: float = 0.05  # replace the aligned entity by a random other one
    drop_prob: float = 0.15  # mask the alignment (no entity input at that token)
    candidates: str = "sequence"  # sequence | batch: the entities the softmax ranges over

    def validate(self) -> None:
        if self.replace_prob < 0 or self.drop_prob < 0 or self.replace_prob + self.drop_prob > 1:
            raise UserError("objectives.dea: replace_prob and drop_prob must be at least 0 and sum to at most 1")
        if self.candidates not in CANDIDATES:
            raise UserError(f"objectives.dea.candidates must be one of {', '.join(CANDIDATES)}, "
                            f"not '{self.candidates}'")


def _needs_entities(backbone) -> None:
    if "entity_ids" not in backbone.inputs:
        raise UserError("objective 'dea' predicts the entities aligned with the tokens and needs a model that "
                        "reads them; use an ernie-thu-* preset")


class DEAHead(Head):
    kind = "dea"
    target_key = "dea_labels"

    def __init__(self, backbone, candidates: str = "sequence", **options):
        super().__init__(backbone, candidates=candidates, **options)
        _needs_entities(backbone)
        config = backbone.config
        self.candidates = candidates
        self.dense = nn.Linear(config.hidden_size, config.entity_size)
        self.act = activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.entity_size, eps=config.layer_norm_eps)
        self.entity_weight = backbone.entity_embeddings.weight  # shared with the backbone's table
        nn.init.normal_(self.dense.weight, std=config.initializer_range)
        nn.init.zeros_(self.dense.bias)

    def logits(self, out, batch):
        """None: the candidates come from the aligned entities of a training batch."""

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        rows = chosen.nonzero(as_tuple=True)[0]
        hidden = self.norm(self.act(self.dense(out.last_hidden_state[chosen])))  # [n, entity_size]
        if len(rows) == 0:
            return hidden.sum() * 0.0
        candidates, target = torch.unique(labels[chosen], return_inverse=True)
        scores = (hidden @ self.entity_weight[candidates].T.to(hidden.dtype)).float()  # [n, candidates]
        if self.candidates == "sequence":  # only the entities aligned in the token's own sequence
            present = torch.zeros(labels.shape[0], len(candidates), dtype=torch.bool, device=labels.device)
            present[rows, target] = True
            scores = scores.masked_fill(~present[rows], float("-inf"))
        return F.cross_entropy(scores, target, reduction="sum")


class DenoisingEntityAutoEncoder(Objective):
    name = "dea"
    head = DEAHead
    Options = DEAOptions
    direction = "bidirectional"
    salt = 0xDEA

    def __init__(self, options: DEAOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.num_entities: int | None = None  # from the corpus (check_corpus)

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        _needs_entities(backbone)

    def check_corpus(self, corpus) -> None:
        info = corpus.meta.get("entities")
        if not info:
            raise UserError(f"objective 'dea' needs entity-aligned shards, but {corpus.directory} has no entities; "
                            "prepare the corpus with `ptmzoo prepare --entities VECTORS` (e.g. from `ptmzoo transe`)")
        self.num_entities = int(info["count"])

    def head_options(self):
        return {"candidates": self.options.candidates}

    def prepare(self, batch, keys) -> None:
        if "entity_ids" not in batch or self.num_entities is None:
            raise UserError("objective 'dea' needs entity-aligned shards (`ptmzoo prepare --entities VECTORS`)")
        entity_ids = batch["entity_ids"]
        labels = np.where(entity_ids > 0, entity_ids, -100)
        opts = self.options
        for row, (epoch, index) in enumerate(keys):
            aligned = np.flatnonzero(entity_ids[row] > 0)
            if len(aligned) == 0:
                continue
            rng = self.rng(epoch, index)
            draw = rng.random(len(aligned))
            replaced = aligned[draw < opts.replace_prob]
            entity_ids[row, aligned[(draw >= opts.replace_prob) & (draw < opts.replace_prob + opts.drop_prob)]] = 0
            if len(replaced) and self.num_entities > 1:  # uniform over the other entities (ids 1..count)
                other = rng.integers(1, self.num_entities, size=len(replaced))
                entity_ids[row, replaced] = other + (other >= entity_ids[row, replaced])
        batch["dea_labels"] = labels


