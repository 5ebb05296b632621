"""ELECTRA presets (Clark et al., 2020, table 6): the discriminator's size; the generator is a
fraction of it (hidden, feed-forward and heads): 1/4 for small, 1/3 for base. Pre-trained with
replaced-token detection (generator MLM + 50 x discriminator loss)."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers, hidden, heads, embedding size, generator fraction, sequence length)
    "electra-tiny": (2, 128, 2, 128, 0.25, 128),
    "electra-small": (12, 256, 4, 128, 0.25, 128),
    "electra-base": (12, 768, 12, 768, 1 / 3, 512),
}

for _name, (_layers, _hidden, _heads, _embed, _gen, _seq) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="electra",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               "embedding_size": _embed, "generator_size": _gen},
        objectives={"rtd": {}},
        seq_len=_seq,
        description=f"ELECTRA discriminator, {_layers} layers x {_hidden} hidden, generator x{_gen:.2g}, RTD",
    ))
