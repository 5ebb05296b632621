"""A backbone with named heads: the module that is trained, saved and returned by ``ptmzoo.load``.

Heads belong to objectives (pre-training) and tasks (fine-tuning) and are defined in their
files; ``ptmzoo.json`` records each head's ``kind`` and options, and the catalog
(``ptmzoo.catalog``) maps kinds back to classes when a checkpoint is rebuilt. Each head computes
logits from the backbone output and, given a batch with its targets, the *sum* of its loss over
the batch together with the number of targets: the Trainer divides by the count over the whole
optimizer step (all micro-batches, all processes), which makes gradient accumulation and data
parallelism give exactly the loss of one big batch.

Besides heads, a model may hold *helper networks* that an objective trains with it and that are
saved with it (ELECTRA's generator): ``add_helper``; they are described in ``ptmzoo.json`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from .base import Backbone, BackboneOutput, ModelOutput
from .inputs import check_token_ids


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP, FSDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


class Head(nn.Module):
    kind: ClassVar[str]
    target_key: ClassVar[str]  # the batch entry with this head's targets (-100 = no target)
    needs_hidden_states: ClassVar[bool] = False  # reads every layer's states, not only the last
    perplexity: ClassVar[bool] = False  # its loss is the mean NLL of tokens of the vocabulary (eval_ppl: exp of it)
    fills_masks: ClassVar[bool] = False  # its logits at a mask token score the vocabulary (``ptmzoo serve`` fill-mask)

    def __init__(self, backbone: Backbone, **options: Any):
        super().__init__()
        self.options = options

    @classmethod
    def from_spec(cls, backbone: Backbone, options: dict[str, Any], head_class: Callable[[str], type[Head]]) -> Head:
        """Rebuild the head recorded in ``ptmzoo.json``; ``head_class`` resolves the kinds of heads
        that a head wraps (``finetune.strategies.LayerMixHead``)."""
        return cls(backbone, **options)

    def logits(self, out: BackboneOutput, batch: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """Logits from the backbone output; ``batch`` holds at least input_ids and attention_mask."""
        raise NotImplementedError

    def attach(self, model: PtmModel) -> None:
        """Called once the head is added to ``model``: a head that shares another head's layers
        (StructBERT's word order reads through the MLM head) takes them here."""

    def count_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (batch[self.target_key] != -100).sum()

    def loss_sum(self, out: BackboneOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class SequenceHead(Head):
    """A head with one target per sequence (classification, next-sentence prediction)."""

    def count_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(batch[self.target_key].numel(), device=batch[self.target_key].device)


class PtmModel(nn.Module):
    """``backbone`` + ``heads`` (+ ``helpers``); ``forward`` returns hidden states, logits and
    (with targets) losses."""

    def __init__(self, family: str, backbone: Backbone, heads: dict[str, Head] | None = None):
        super().__init__()
        self.family = family
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads or {})
        self.helpers = nn.ModuleDict()

    @property
    def config(self):
        return self.backbone.config

    @property
    def input_names(self) -> tuple[str, ...]:
        """The batch entries ``forward`` passes to the network (the Trainer selects these)."""
        return self.backbone.inputs

    def select_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The model inputs of a batch (a batch also holds targets and other entries)."""
        return {name: batch[name] for name in self.input_names if name in batch}

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Real (non-padding) tokens of a batch, for tokens/s: ``padding_mask`` when the
        ``attention_mask`` is a visibility matrix (UniLM), else the [B, L] attention mask, else
        every position of the primary input."""
        mask = batch.get("padding_mask", batch.get("attention_mask"))
        if mask is not None and mask.dim() == 2:
            return int(mask.sum())
        primary = batch[self.input_names[0]]
        return int(primary.shape[0] * primary.shape[1])

    def count_rows(self, batch: dict[str, torch.Tensor]) -> int:
        """Samples (sequences) in a batch."""
        return len(batch[self.input_names[0]])

    def add_head(self, name: str, head: type[Head] | Head, **options: Any) -> Head:
        """Add a head: a ``Head`` instance, or a ``Head`` class built on this backbone with ``options``."""
        if isinstance(head, type):
            head = head(self.backbone, **options)
        elif options:
            raise TypeError("options are for a head class; this head is already built")
        head.attach(self)
        self.heads[name] = head
        return head

    def add_helper(self, name: str, helper: type[nn.Module] | nn.Module, **options: Any) -> nn.Module:
        """Add a helper network: a module with a ``kind`` and its ``options`` (built as
        ``helper(model, **options)`` from a class), e.g. ELECTRA's generator."""
        if isinstance(helper, type):
            helper = helper(self, **options)
        self.helpers[name] = helper
        return helper

    def heads_spec(self) -> dict[str, dict[str, Any]]:
        return {name: {"kind": head.kind, "options": head.options} for name, head in self.heads.items()}

    def helpers_spec(self) -> dict[str, dict[str, Any]]:
        return {name: {"kind": helper.kind, "options": helper.options} for name, helper in self.helpers.items()}

    def count_targets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: head.count_targets(batch) for name, head in self.heads.items() if head.target_key in batch}

    def loss_names(self) -> list[str]:
        """Every name ``forward`` may report in ``loss_sums`` (in a fixed order, for evaluation)."""
        return list(self.heads)

    def forward(self, *args: torch.Tensor | None, targets: dict[str, torch.Tensor] | None = None,
                output_hidden_states: bool = False, cache=None, layers=None,
                **inputs: torch.Tensor | None) -> ModelOutput:
        """The inputs the backbone declares, by keyword or in the order of ``input_names`` (input
        ids, attention mask, segments, positions, packed ``document_ids`` [B, L] that restrict
        attention to each document, ...).

        Without ``targets``: every head's logits (``.logits`` is the first head's).
        With ``targets`` (a training batch): each head with targets in it returns its summed
        loss in ``.loss_sums``; ``.loss`` is the sum of the heads' per-target means.
        ``cache`` (a ``generation.KVCache``, backbones that ``supports_cache``) continues the cached
        tokens and appends to them. ``layers`` (BERT-family backbones): blocks to run instead of the
        backbone's own (module replacing).
        """
        inputs = self.named_inputs(args, inputs, cached=cache is not None)
        heads_see = {"input_ids": inputs.get("input_ids"), "attention_mask": inputs.get("attention_mask")}
        if inputs[self.input_names[0]].dim() > self.backbone.input_rank:  # groups of sequences
            inputs = flatten_groups(inputs)
        if cache is not None:
            if not self.backbone.supports_cache:
                raise ValueError(f"a {self.family} backbone takes no cache")
            inputs["cache"] = cache
        if layers is not None:
            inputs["layers"] = layers
        # heads that read several layers (finetune.strategies.LayerMixHead) need all of them
        output_hidden_states = output_hidden_states or any(h.needs_hidden_states for h in self.heads.values())
        out = self.backbone(output_hidden_states=output_hidden_states, **inputs)
        return self.apply_heads(self.wrap_output(out), out, heads_see, targets)

    def named_inputs(self, args: tuple, inputs: dict[str, Any], cached: bool = False) -> dict[str, torch.Tensor]:
        """Positional and keyword inputs as one checked dict, without the ones given as None (a 1-D
        primary input is one sequence)."""
        names = self.input_names
        if len(args) > len(names):
            raise ValueError(f"a {self.family} model takes at most {len(names)} inputs ({', '.join(names)})")
        for name, value in zip(names, args):
            if name in inputs:
                raise ValueError(f"input {name!r} given twice")
            inputs[name] = value
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise ValueError(f"a {self.family} model takes no input {unknown[0]!r} (it reads {', '.join(names)})")
        inputs = {name: value for name, value in inputs.items() if value is not None}
        primary = names[0]
        if primary not in inputs:
            raise ValueError(f"a {self.family} model needs {primary!r}")
        if primary == "input_ids":  # a cache's positions continue past this input: its length is not the limit
            check_token_ids(inputs[primary], self.config.vocab_size, None if cached else self.backbone.max_length)
        if inputs[primary].dim() == self.backbone.input_rank - 1:
            inputs[primary] = inputs[primary][None]
        return inputs

    def wrap_output(self, out: BackboneOutput) -> ModelOutput:
        """The model's output around the backbone's (before the heads fill it in)."""
        return ModelOutput(out.last_hidden_state, out.pooler_output, out.hidden_states)

    def apply_heads(self, result: ModelOutput, out: BackboneOutput, inputs: dict[str, torch.Tensor | None],
                    targets: dict[str, torch.Tensor] | None) -> ModelOutput:
        """Fill ``result`` with every head's logits (no ``targets``) or losses (see ``forward``)."""
        if targets is None:
            for name, head in self.heads.items():
                logits = head.logits(out, inputs)
                if logits is not None:  # None: the head needs a training batch (e.g. span boundaries)
                    result.head_logits[name] = logits
            if result.head_logits:
                result.logits = next(iter(result.head_logits.values()))
            return result
        total = None
        for name, head in self.heads.items():
            if head.target_key not in targets:
                continue
            loss_sum = head.loss_sum(out, targets)
            result.loss_sums[name] = loss_sum
            mean = loss_sum / head.count_targets(targets).clamp(min=1)
            total = mean if total is None else total + mean
        result.loss = total
        return result


def flatten_groups(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Groups of token sequences [batch, group, length] (multiple-choice answers, both orders of a
    pair): the backbone reads one sequence per row; heads get the grouped inputs back."""
    flat = {name: value.flatten(0, 1) for name, value in inputs.items()}
    mask = flat.get("attention_mask")
    if mask is not None:  # a padding choice (no tokens) reads one token, so no NaNs
        mask = mask.clone()
        mask[:, 0] += (mask.sum(-1) == 0).to(mask.dtype)
        flat["attention_mask"] = mask
    return flat
