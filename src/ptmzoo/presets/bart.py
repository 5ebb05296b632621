"""BART presets (Lewis et al., 2020): base (6+6 layers, 140M) and large (12+12 layers, 400M) with
the GPT-2 byte-level vocabulary (50,265 entries), and a tiny one for tests. Pre-trained with text
infilling and sentence permutation, as BART-large was."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers per stack, hidden, heads, positions)
    "bart-tiny": (2, 128, 4, 256),
    "bart-base": (6, 768, 12, 1024),
    "bart-large": (12, 1024, 16, 1024),
}

for _name, (_layers, _hidden, _heads, _positions) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="bart",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               "max_position_embeddings": _positions},
        objectives={"denoising": {}},
        seq_len=128 if _name == "bart-tiny" else 512,
        description=f"BART encoder-decoder, {_layers}+{_layers} layers x {_hidden} hidden, denoising",
    ))
