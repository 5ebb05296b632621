"""Named architectures. A preset fixes a family, its config and default objectives; recipes
(experiments) refer to presets by name. ``ptmzoo zoo`` lists them with parameter counts."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    model: dict[str, Any]
    objectives: dict[str, dict] = field(default_factory=dict)
    seq_len: int = 128
    description: str = ""


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown preset '{name}'; {hint}`ptmzoo zoo` lists them all")
    return PRESETS[name]


def count_parameters(preset: Preset, vocab_size: int | None = None) -> int:
    """Parameters of the backbone plus the default heads (tied weights counted once)."""
    import torch

    from ..models import backbone_class
    from ..models.seq2seq import model_for
    from ..objectives import OBJECTIVES

    cls = backbone_class(preset.family)
    config = dict(preset.model)
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    with torch.device("meta"):
        model = model_for(preset.family, cls(cls.config_class.from_dict(config)))  # ELECTRA: + generator
        for name in preset.objectives:
            model.add_head(name, OBJECTIVES[name].head_kind)
    return sum(p.numel() for p in model.parameters())


from . import bart, bert, electra, ernie, gpt, t5, transformer, unilm, xlm  # noqa: F401  (register the presets)
