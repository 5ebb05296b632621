"""Pre-training objectives: each = corruption (in the collator) + head + loss."""

from . import clm, denoising, mass, mlm, nsp_sop, rtd, sbo, span_corruption, tlm, unilm  # noqa: F401  (register objectives and heads)
from .base import OBJECTIVES, Objective, PretrainCollator, build_objectives

__all__ = ["OBJECTIVES", "Objective", "PretrainCollator", "build_objectives"]
