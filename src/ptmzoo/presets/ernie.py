"""ERNIE (Tsinghua; Zhang et al., 2019): BERT-base-sized, N = 6 token layers under M = 6
aggregators that fuse TransE entity embeddings (100-dimensional, 4 entity attention heads),
pre-trained with MLM, NSP and the denoising entity auto-encoder (dEA). The entity table's size
and width follow the shards' entity vectors (``ptmzoo prepare --entities``); the parameter counts
of ``ptmzoo zoo`` leave it out (it depends on the knowledge graph, and stays frozen)."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (T-Encoder layers N, K-Encoder layers M, hidden, heads, entity size, entity heads, seq)
    "ernie-thu-tiny": (2, 2, 128, 2, 32, 2, 128),
    "ernie-thu-base": (6, 6, 768, 12, 100, 4, 256),
}

for _name, (_n, _m, _hidden, _heads, _entity, _entity_heads, _seq) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="ernie",
        model={"num_layers": _n + _m, "knowledge_layers": _m, "hidden_size": _hidden, "num_heads": _heads,
               "intermediate_size": 4 * _hidden, "entity_size": _entity, "entity_heads": _entity_heads},
        objectives={"mlm": {}, "nsp": {}, "dea": {}},
        seq_len=_seq,
        description=f"ERNIE (THU), {_n} token + {_m} knowledge layers x {_hidden} hidden, "
                    f"entities {_entity}-d, MLM + NSP + dEA",
    ))
