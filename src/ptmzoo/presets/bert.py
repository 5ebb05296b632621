"""BERT presets: base and large from the paper, and the official miniature sizes (Turc et al.,
2019, "Well-Read Students Learn Better"): 64-dimensional heads, feed-forward of 4 x hidden."""

from . import Preset, register

_SIZES = {  # name: (layers, hidden)
    "bert-tiny": (2, 128),
    "bert-mini": (4, 256),
    "bert-small": (4, 512),
    "bert-medium": (8, 512),
    "bert-base": (12, 768),
    "bert-large": (24, 1024),
}

for _name, (_layers, _hidden) in _SIZES.items():
    register(Preset(
        name=_name,
        family="bert",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _hidden // 64,
               "intermediate_size": 4 * _hidden},
        objectives={"mlm": {}, "nsp": {}},
        seq_len=128,
        description=f"BERT encoder, {_layers} layers x {_hidden} hidden, MLM + NSP",
    ))
