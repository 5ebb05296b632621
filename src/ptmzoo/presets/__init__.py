"""Named architectures. A preset fixes a family, its config and default objectives; recipes
(experiments) refer to presets by name. ``ptmzoo zoo`` lists them with parameter counts
(``catalog.count_parameters``). Each family's file holds its presets as data."""

from __future__ import annotations

import difflib

from ..errors import UserError
from . import bart, bert, bilstm, electra, ernie, gpt, rnn, t5, transfo_xl, transformer, unilm, xlm, xlnet
from .base import Preset

PRESETS: dict[str, Preset] = {preset.name: preset for module in (bert, electra, ernie, xlm, gpt, t5, bart, transformer,
                                                                 unilm, transfo_xl, xlnet, rnn, bilstm)
                              for preset in module.PRESETS}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown preset '{name}'; {hint}`ptmzoo zoo` lists them all")
    return PRESETS[name]


__all__ = ["PRESETS", "Preset", "get_preset"]
