"""UniLM's pre-training (Dong et al., 2019): one shared Transformer trained as three kinds of LM.

Every batch is a cloze task -- BERT's masking (15%, 80/10/10) -- but the tokens see each other
through one of UniLM's self-attention masks (``nn.attention.unified_mask``), drawn per batch
in the paper's proportions: 1/3 bidirectional, 1/3 sequence-to-sequence, 1/6 left-to-right and
1/6 right-to-left. The seq2seq mask treats segment A as the source and segment B as the target;
the sentence pairs come from NSP's pair builder, and next-sentence prediction is trained on
the bidirectional batches only (its labels are dropped from the others, so its head skips them).

The mask goes to the backbone as a [B, L, L] ``attention_mask`` (``models.unilm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.packing import sample_rng
from ..errors import UserError
from ..models.unilm import UnilmModel
from ..nn.attention import UNIFIED_MASKS, unified_mask
from .mlm import MaskedLM, MLMHead, MLMOptions


@dataclass
class UniLMOptions(MLMOptions):
    # share of batches per mask kind (the paper's: 1/3, 1/3, 1/6, 1/6)
    bidirectional: float = 1 / 3
    seq2seq: float = 1 / 3
    left_to_right: float = 1 / 6
    right_to_left: float = 1 / 6

    def validate(self) -> None:
        super().validate()
        shares = self.shares
        if min(shares) < 0 or not np.isclose(sum(shares), 1.0):
            raise UserError("objectives.unilm: the shares bidirectional, left_to_right, right_to_left and "
                            "seq2seq must be non-negative and sum to 1")

    @property
    def shares(self) -> list[float]:
        return [getattr(self, kind) for kind in UNIFIED_MASKS]


class UnifiedLM(MaskedLM):
    name = "unilm"
    head = MLMHead
    Options = UniLMOptions
    salt = 13

    def check_objectives(self, objectives) -> None:
        # segments A / B (source and target of the seq2seq mask) come from the pair builder of NSP
        if not any(o.samples == "sentence_pairs" for o in objectives):
            raise UserError("objective 'unilm' trains its seq2seq mask on sentence pairs; add nsp "
                            "(--objectives unilm,nsp, as in the unilm-* presets)")

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not isinstance(backbone, UnilmModel) or backbone.config.type_vocab_size < 2:
            raise UserError(f"objective 'unilm' needs a UniLM backbone with two segments; '{preset}' is not one "
                            "(use unilm-tiny or unilm-base)")

    def mask_kind(self, keys: list[tuple[int, int]]) -> str:
        """The batch's mask kind, drawn from a generator seeded by its first sample (reproducible)."""
        epoch, index = keys[0]
        rng = sample_rng(self.seed, epoch, index, self.salt + 1)  # not the stream that masks the tokens
        return str(rng.choice(UNIFIED_MASKS, p=self.options.shares))

    def prepare(self, batch, keys) -> None:
        super().prepare(batch, keys)  # the cloze task: masked tokens and their labels
        kind = self.mask_kind(keys)
        batch["padding_mask"] = batch["attention_mask"]  # real tokens, for the trainer's tokens/s
        mask = unified_mask(kind, torch.from_numpy(batch["attention_mask"]), torch.from_numpy(batch["token_type_ids"]))
        batch["attention_mask"] = mask.numpy()
        if kind != "bidirectional":
            batch.pop("nsp_labels", None)
