"""Decoder presets: GPT-1, the four GPT-2 sizes of the paper (124M, 355M, 774M, 1.5B), the GPT-3
size table, and tiny ones for tests."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_GPT2_SIZES = {  # name: (layers, hidden, heads, pre-training context)
    "gpt2-tiny": (2, 128, 2, 128),
    "gpt2-small": (12, 768, 12, 1024),
    "gpt2-medium": (24, 1024, 16, 1024),
    "gpt2-large": (36, 1280, 20, 1024),
    "gpt2-xl": (48, 1600, 25, 1024),
}

for _name, (_layers, _hidden, _heads, _ctx) in _GPT2_SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="gpt2",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads,
               "intermediate_size": 4 * _hidden},
        objectives={"clm": {}},
        seq_len=_ctx,
        description=f"GPT-2 decoder, {_layers} layers x {_hidden} hidden, causal LM",
    ))

# GPT-1 (117M): 12 layers x 768, 12 heads, 512 positions, post-LayerNorm.
for _name, (_layers, _hidden, _heads, _ctx) in {"gpt1-tiny": (2, 128, 2, 128), "gpt1": (12, 768, 12, 512)}.items():
    PRESETS.append(Preset(
        name=_name,
        family="gpt1",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads,
               "intermediate_size": 4 * _hidden, "max_position_embeddings": max(_ctx, 512)},
        objectives={"clm": {}},
        seq_len=_ctx,
        description=f"GPT-1 post-LN decoder, {_layers} layers x {_hidden} hidden, causal LM",
    ))

# GPT-3 (Brown et al., 2020, Table 2.1): 2048-token context, GPT-2's vocabulary, dense and
# locally banded attention layers alternating (band of 256 tokens, as in GPT-Neo; the paper does
# not give it). The table's head counts do not always divide d_model (XL: 24 x 128 != 2048; 13B:
# d_model 5140 with 40 x 128 = 5120): XL keeps 128-wide heads (16 of them) and 13B uses 5120,
# which gives the table's parameter counts. The large sizes are configs (`ptmzoo zoo` counts them).
GPT3_WINDOW = 256
GPT3_SIZES = {  # name: (layers, hidden, heads, parameters in the paper)
    "gpt3-small": (12, 768, 12, 125e6),
    "gpt3-medium": (24, 1024, 16, 350e6),
    "gpt3-large": (24, 1536, 16, 760e6),
    "gpt3-xl": (24, 2048, 16, 1.3e9),
    "gpt3-2.7b": (32, 2560, 32, 2.7e9),
    "gpt3-6.7b": (32, 4096, 32, 6.7e9),
    "gpt3-13b": (40, 5120, 40, 13.0e9),
    "gpt3-175b": (96, 12288, 96, 175.0e9),
}

for _name, (_layers, _hidden, _heads, _params) in GPT3_SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="gpt2",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               "max_position_embeddings": 2048, "attention_window": GPT3_WINDOW},
        objectives={"clm": {}},
        seq_len=2048,
        description=f"GPT-3 decoder, {_layers} layers x {_hidden} hidden, dense/banded attention, causal LM",
    ))
PRESETS.append(Preset(name="gpt3-tiny", family="gpt2",
                model={"num_layers": 2, "hidden_size": 128, "num_heads": 2, "intermediate_size": 512,
                       "max_position_embeddings": 256, "attention_window": 32},
                objectives={"clm": {}}, seq_len=128,
                description="GPT-3-style decoder for tests, 2 layers x 128 hidden, band of 32"))
