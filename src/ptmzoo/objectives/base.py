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
from ..data.derived import add_derived_inputs
from ..data.packing import sample_rng
from ..data.tokenizers import Tokenizer
from ..errors import UserError
from ..models.base import Backbone, ModelOutput
from ..models.model import Head, PtmModel


@dataclass
class NoOptions(Config):
    pass


# The samples an objective trains on (``data.samples`` builds each kind from the shards):
SAMPLE_KINDS = ("blocks", "sentence_pairs", "parallel_pairs", "stream")
# blocks: packed token blocks; sentence_pairs: two segments (NSP/SOP); parallel_pairs: a sentence
# and its translation (TLM); stream: each batch row continues the previous step's text (BPTT, XL).


class Objective:
    """Corruption (``prepare``, in the collator) + ``head`` + the head's loss.

    What an objective needs is declared: the ``samples`` it trains on, the ``direction`` of the
    backbone, the vocabulary it adds (``extra_vocab``, T5's sentinels). ``attach`` adds its head
    (and helper networks, e.g. ELECTRA's generator) to the model. An objective that needs more
    than one forward pass defines ``step`` (it runs instead of the model's forward, inside the
    module the Trainer wraps for DDP/FSDP); one that carries state from step to step (a memory,
    an LSTM's hidden state) keeps it in ``state_dict``/``load_state_dict``, saved with the
    trainer state for an exact resume. ``networks`` are modules it uses but does not save (a
    distillation teacher).
    """

    name: ClassVar[str]
    head: ClassVar[type[Head]]
    helpers: ClassVar[dict[str, type[torch.nn.Module]]] = {}  # helper networks trained and saved with the model
    Options: ClassVar[type[Config]] = NoOptions
    samples: ClassVar[str] = "blocks"
    direction: ClassVar[str] = "any"  # "bidirectional" (encoders), "causal" (decoders) or "any"
    salt: ClassVar[int] = 0  # separates this objective's random stream from the others'
    has_step: ClassVar[bool] = False  # ``step`` replaces the model's forward in training
    # False: a step built by another job (distillation, module replacing) with networks it is handed,
    # not a pre-training objective a recipe can name (so not in OBJECTIVES)
    named_in_recipes: ClassVar[bool] = True
    extra_losses: ClassVar[tuple[str, ...]] = ()  # losses ``step`` reports beyond the model's heads
    perplexity_losses: ClassVar[tuple[str, ...]] = ()  # those of them that are a language model's (eval_ppl)
    shardable: ClassVar[bool] = True  # the step runs the model only through its forward (FSDP can shard it)

    def __init__(self, options: Config, tokenizer: Tokenizer, seed: int = 0):
        self.options = options
        self.tokenizer = tokenizer
        self.seed = seed
        self.extra_vocab = 0  # token ids the objective adds after the tokenizer's (T5's sentinels)

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

    def sample_options(self) -> dict[str, Any]:
        """Settings of this objective's kind of samples (e.g. NSP's share of random pairs)."""
        return {}

    def attach(self, model: PtmModel) -> None:
        """Add this objective's helper networks and its head (named after the objective) to ``model``."""
        for name, helper in self.helpers.items():
            if name not in model.helpers:
                model.add_helper(name, helper)
        model.add_head(self.name, self.head, **self.head_options())

    # ---- objectives with a training step of their own ----------------------------------------
    def step(self, model: PtmModel, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """The training (and evaluation) forward pass on a batch; only with ``has_step``."""
        raise NotImplementedError

    def count_targets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Targets of the ``extra_losses`` in a batch (by loss name)."""
        return {}

    def networks(self) -> dict[str, torch.nn.Module]:
        """Modules the step uses that are not part of the saved model (a frozen teacher)."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State carried from one step to the next (tensors), for an exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return sample_rng(self.seed, epoch, index, self.salt)

    def prepare(self, batch: dict[str, np.ndarray], keys: list[tuple[int, int]]) -> None:
        """Corrupt inputs and add this objective's targets to ``batch`` (in place)."""


def sample_kind(objectives: list[Objective]) -> str:
    """The kind of samples a set of objectives trains on: the one kind other than plain blocks
    that some objective asks for (two different ones cannot share a batch)."""
    kinds = {o.samples for o in objectives} - {"blocks"}
    if len(kinds) > 1:
        raise UserError(f"objectives {', '.join(o.name for o in objectives)} need different samples "
                        f"({', '.join(sorted(kinds))}); pre-train them in separate runs")
    return kinds.pop() if kinds else "blocks"


# the value of padding positions of per-token sample entries (0 for the others)
PAD_FILL = {"document_ids": -1}


class PretrainCollator:
    """Pads samples into a batch and lets each objective corrupt it and add its targets.

    Every per-token entry of the samples (arrays as long as ``input_ids``: segments, packed
    documents and positions, word marks, ERNIE's entity ids, ...) is padded into a [B, L, ...]
    array; per-sample integers (NSP/SOP labels) become a [B] array. The model reads the entries
    it declares (``Backbone.inputs``); objectives read the rest. ``derived``: the inputs the
    backbone derives from the token ids (``Backbone.derived_inputs``: ELMo's characters), added
    after the objectives' corruption with the ``tokenizer``."""

    def __init__(self, objectives: list[Objective], pad_id: int, derived: dict | None = None, tokenizer=None):
        self.objectives = objectives
        self.pad_id = pad_id
        self.derived, self.tokenizer = derived or {}, tokenizer

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(s["input_ids"]) for s in samples)
        size = len(samples)
        first = samples[0]
        batch = {"input_ids": np.full((size, length), self.pad_id, dtype=np.int64),
                 "attention_mask": np.zeros((size, length), dtype=np.int64),
                 "token_type_ids": np.zeros((size, length), dtype=np.int64)}
        per_token = [key for key, value in first.items() if key not in batch and isinstance(value, np.ndarray)]
        for key in per_token:
            tail = first[key].shape[1:]
            batch[key] = np.full((size, length, *tail), PAD_FILL.get(key, 0), dtype=np.int64)
        for row, sample in enumerate(samples):
            n = len(sample["input_ids"])
            batch["input_ids"][row, :n] = sample["input_ids"]
            batch["attention_mask"][row, :n] = 1
            for key in ("token_type_ids", *per_token):
                if key in sample:
                    batch[key][row, :n] = sample[key]
        for key, value in first.items():
            if key not in ("epoch", "index") and isinstance(value, (int, np.integer)):
                batch[key] = np.asarray([s[key] for s in samples], dtype=np.int64)
        keys = [(int(s["epoch"]), int(s["index"])) for s in samples]
        for objective in self.objectives:
            objective.prepare(batch, keys)
        add_derived_inputs(batch, self.derived, self.tokenizer)
        return {name: torch.from_numpy(value) for name, value in batch.items()}
