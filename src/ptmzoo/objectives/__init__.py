"""Pre-training objectives: each = corruption (in the collator) + head + loss."""

from . import clm, mlm, nsp_sop  # noqa: F401  (register objectives and heads)
from .base import OBJECTIVES, Objective, PretrainCollator, build_objectives

__all__ = ["OBJECTIVES", "Objective", "PretrainCollator", "build_objectives"]
