"""What a preset is: a named architecture (a family, its config, default objectives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    model: dict[str, Any]
    objectives: dict[str, dict] = field(default_factory=dict)
    seq_len: int = 128
    description: str = ""
