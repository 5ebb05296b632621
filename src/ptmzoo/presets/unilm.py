"""UniLM presets (Dong et al., 2019): BERT-sized encoders trained with the unified masks and NSP.
UniLM-base is the BERT-large shape (24 layers, 1024 hidden, 16 heads, 340M) with a 28,996-entry
cased WordPiece vocabulary; unilm-tiny is for tests and CPU experiments."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers, hidden, heads, vocabulary)
    "unilm-tiny": (2, 128, 4, 28996),
    "unilm-base": (24, 1024, 16, 28996),
}

for _name, (_layers, _hidden, _heads, _vocab) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="unilm",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               "vocab_size": _vocab},
        objectives={"unilm": {}, "nsp": {}},
        seq_len=128 if _name == "unilm-tiny" else 512,
        description=f"UniLM, {_layers} layers x {_hidden} hidden, unified LM masks + NSP",
    ))
