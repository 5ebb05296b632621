"""Presets of the original Transformer (Vaswani et al., 2017): base (6+6 layers, 512 hidden, 8 heads,
2,048 feed-forward, 65M with the 37k shared vocabulary) and big (1024 hidden, 16 heads, 4,096,
dropout 0.3), plus small ones for Multi30k-sized data and tests. Trained on translation by
``ptmzoo finetune --task translation`` (no pre-training objective)."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers per stack, hidden, heads, feed-forward, dropout)
    "transformer-tiny": (2, 64, 4, 128, 0.1),
    "transformer-small": (3, 256, 4, 1024, 0.1),
    "transformer-base": (6, 512, 8, 2048, 0.1),
    "transformer-big": (6, 1024, 16, 4096, 0.3),
}

for _name, (_layers, _hidden, _heads, _ffn, _dropout) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="transformer",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": _ffn,
               "hidden_dropout": _dropout},
        description=f"Transformer encoder-decoder, {_layers}+{_layers} layers x {_hidden} hidden (translation)",
    ))

# MASS (Song et al., 2019), section 4.1: the Transformer with 6+6 layers, 1024 hidden, 4096
# feed-forward (8 heads and GELU, as in its XLM-based code), pre-trained with masked seq2seq.
PRESETS.append(Preset(
    name="mass-base",
    family="transformer",
    model={"num_layers": 6, "hidden_size": 1024, "num_heads": 8, "intermediate_size": 4096, "hidden_act": "gelu",
           "attention_dropout": 0.1},
    objectives={"mass": {}},
    seq_len=256,
    description="MASS: Transformer encoder-decoder, 6+6 layers x 1024 hidden, masked sequence-to-sequence",
))
