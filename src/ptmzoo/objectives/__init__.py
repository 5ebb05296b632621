"""Pre-training objectives: each = corruption (in the collator) + head + loss, registered by name
in ``OBJECTIVES`` (the names of ``pretrain --objectives``)."""

from __future__ import annotations

from ..data.tokenizers import Tokenizer
from ..errors import UserError
from .awd import AwdLM
from .base import Objective, PretrainCollator, sample_kind
from .bilm import BidirectionalLM
from .clm import CausalLM
from .dea import DenoisingEntityAutoEncoder
from .denoising import Denoising
from .mass import Mass
from .mlm import MaskedLM
from .nsp_sop import NextSentencePrediction, SentenceOrderPrediction
from .plm import PermutationLM
from .rtd import ReplacedTokenDetection
from .sbo import SpanBoundary
from .span_corruption import SpanCorruption
from .tlm import TranslationLM
from .unilm import UnifiedLM
from .word_order import WordOrder
from .xl_lm import SegmentLM

OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (
    MaskedLM, NextSentencePrediction, SentenceOrderPrediction, CausalLM, SpanBoundary, ReplacedTokenDetection,
    TranslationLM, WordOrder, DenoisingEntityAutoEncoder, UnifiedLM, Denoising, SpanCorruption, Mass, SegmentLM,
    PermutationLM, AwdLM, BidirectionalLM)}


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
    sample_kind(objectives)  # one kind of samples for all
    return objectives


__all__ = ["OBJECTIVES", "Objective", "PretrainCollator", "build_objectives", "sample_kind"]
