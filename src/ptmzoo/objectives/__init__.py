"""Pre-training objectives: each = corruption (in the collator) + head + loss."""

from . import clm, denoising, mass, mlm, nsp_sop, rtd, sbo, span_corruption, tlm, unilm  # noqa: F401  (register objectives and heads)
from .base import OBJECTIVES, Objective, PretrainCollator, build_objectives
from .dea import DenoisingEntityAutoEncoder  # noqa: F401  (ERNIE-THU's denoising entity auto-encoder)
from .word_order import WordOrder  # noqa: F401  (StructBERT's word structural objective)

__all__ = ["OBJECTIVES", "Objective", "PretrainCollator", "build_objectives"]
