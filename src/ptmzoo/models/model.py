"""A backbone with named heads: the module that is trained, saved and returned by ``ptmzoo.load``.

Heads belong to objectives (pre-training) and tasks (fine-tuning) and are defined in their
files; they register here by kind so that a checkpoint can rebuild them from ``ptmzoo.json``.
Each head computes logits from the backbone output and, given a batch with its targets, the
*sum* of its loss over the batch together with the number of targets: the Trainer divides by
the count over the whole optimizer step (all micro-batches, all processes), which makes gradient
accumulation and data parallelism give exactly the loss of one big batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import UserError
from .base import Backbone, BackboneOutput, ModelOutput
from .inputs import check_token_ids

HEAD_TYPES: dict[str, type[Head]] = {}


def register_head(cls: type[Head]) -> type[Head]:
    HEAD_TYPES[cls.kind] = cls
    return cls


class Head(nn.Module):
    kind: ClassVar[str]
    target_key: ClassVar[str]  # the batch entry with this head's targets (-100 = no target)

    def __init__(self, backbone: Backbone, **options: Any):
        super().__init__()
        self.options = options

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
    """``backbone`` + ``heads``; ``forward`` returns hidden states, logits and (with targets) losses."""

    def __init__(self, family: str, backbone: Backbone, heads: dict[str, Head] | None = None):
        super().__init__()
        self.family = family
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads or {})

    @property
    def config(self):
        return self.backbone.config

    def add_head(self, name: str, kind: str, **options: Any) -> Head:
        if kind not in HEAD_TYPES:
            raise UserError(f"unknown head '{kind}' (known: {', '.join(sorted(HEAD_TYPES))})")
        head = HEAD_TYPES[kind](self.backbone, **options)
        head.attach(self)
        self.heads[name] = head
        return head

    def heads_spec(self) -> dict[str, dict[str, Any]]:
        return {name: {"kind": head.kind, "options": head.options} for name, head in self.heads.items()}

    def generate(self, prompts, tokenizer=None, **options):
        """Continue ``prompts`` (texts with ``tokenizer``, or token id lists) with a decoder that has
        a causal LM head; see ``ptmzoo.generation.generate``."""
        from ..generation import generate

        return generate(self, prompts, tokenizer, **options)

    def count_targets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: head.count_targets(batch) for name, head in self.heads.items() if head.target_key in batch}

    def loss_names(self) -> list[str]:
        """Every name ``forward`` may report in ``loss_sums`` (in a fixed order, for evaluation)."""
        return list(self.heads)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        targets: dict[str, torch.Tensor] | None = None,
        document_ids: torch.Tensor | None = None,
        cache=None,
        entity_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Without ``targets``: every head's logits (``.logits`` is the first head's).

        With ``targets`` (a training batch): each head with targets in it returns its summed
        loss in ``.loss_sums``; ``.loss`` is the sum of the heads' per-target means.
        ``document_ids`` ([B, L]) restrict attention to each packed document. ``cache`` (a
        ``generation.KVCache``, decoders only) continues the cached tokens and appends to it.
        ``entity_ids`` ([B, L], 0 = none) are the entities aligned with the tokens; backbones that
        read entities (ERNIE) get them, others never see them.
        """
        check_token_ids(input_ids, self.config.vocab_size, None if cache is not None else self.backbone.max_input_length)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        heads_see = {"input_ids": input_ids, "attention_mask": attention_mask}
        if input_ids.dim() == 3:
            # groups of sequences [batch, group, length] (multiple-choice answers, both orders of a
            # pair): the backbone reads one sequence per row; heads get the grouped inputs back
            input_ids, attention_mask, token_type_ids, position_ids, document_ids, entity_ids = (
                None if t is None else t.reshape(-1, t.shape[-1])
                for t in (input_ids, attention_mask, token_type_ids, position_ids, document_ids, entity_ids))
            if attention_mask is not None:  # a padding choice (no tokens) reads one token, so no NaNs
                attention_mask = attention_mask.clone()
                attention_mask[:, 0] += (attention_mask.sum(-1) == 0).to(attention_mask.dtype)
        extra = {"cache": cache} if cache is not None else {}  # encoders take no cache
        if entity_ids is not None and getattr(self.backbone, "reads_entities", False):
            extra["entity_ids"] = entity_ids
        # heads that read several layers (finetune.strategies.LayerMixHead) need all of them
        output_hidden_states = output_hidden_states or any(getattr(h, "needs_hidden_states", False)
                                                           for h in self.heads.values())
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            document_ids=document_ids, **extra)
        result = ModelOutput(out.last_hidden_state, out.pooler_output, out.hidden_states)
        return self.apply_heads(result, out, heads_see, targets)

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
