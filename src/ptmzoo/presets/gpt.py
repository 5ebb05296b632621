"""GPT-2 presets: the four sizes of the paper (124M, 355M, 774M, 1.5B) and a tiny one for tests."""

from . import Preset, register

_SIZES = {  # name: (layers, hidden, heads, pre-training context)
    "gpt2-tiny": (2, 128, 2, 128),
    "gpt2-small": (12, 768, 12, 1024),
    "gpt2-medium": (24, 1024, 16, 1024),
    "gpt2-large": (36, 1280, 20, 1024),
    "gpt2-xl": (48, 1600, 25, 1024),
}

for _name, (_layers, _hidden, _heads, _ctx) in _SIZES.items():
    register(Preset(
        name=_name,
        family="gpt2",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads,
               "intermediate_size": 4 * _hidden},
        objectives={"clm": {}},
        seq_len=_ctx,
        description=f"GPT-2 decoder, {_layers} layers x {_hidden} hidden, causal LM",
    ))
