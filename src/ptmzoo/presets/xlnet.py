"""XLNet presets (Yang et al., 2019): Base and Large as released (SentencePiece vocabulary of 32,000,
512-token sequences) and a tiny one for tests, each pre-trained by permutation LM with partial
prediction of the last 1/K of the order (K = 6 for Base, 7 for Large, as in the paper) and
span-based prediction."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers, hidden, heads, K, sequence length)
    "xlnet-tiny": (2, 128, 2, 6, 128),
    "xlnet-base": (12, 768, 12, 6, 512),
    "xlnet-large": (24, 1024, 16, 7, 512),
}

for _name, (_layers, _hidden, _heads, _k, _seq_len) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="xlnet",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               **({"vocab_size": 32000} if _hidden >= 768 else {})},
        objectives={"plm": {"partial_k": _k}},
        seq_len=_seq_len,
        description=f"XLNet, {_layers} layers x {_hidden} hidden, two-stream permutation LM (K = {_k})",
    ))
