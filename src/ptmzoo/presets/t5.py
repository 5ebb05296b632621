"""T5 presets. v1.0 (Raffel et al., 2020, Table 14): ReLU, output layer tied to the embeddings;
sizes Small 60M, Base 220M, Large 770M, 3B, 11B with T5's 32,128-entry vocabulary. v1.1 (the
released "t5-v1_1" checkpoints): gated GELU, untied output layer, no dropout in pre-training."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_V1_0 = {  # name: (layers per stack, hidden, heads, head size, feed-forward)
    "t5-tiny": (2, 128, 4, 32, 512),
    "t5-small": (6, 512, 8, 64, 2048),
    "t5-base": (12, 768, 12, 64, 3072),
    "t5-large": (24, 1024, 16, 64, 4096),
    "t5-3b": (24, 1024, 32, 128, 16384),
    "t5-11b": (24, 1024, 128, 128, 65536),
}
_V1_1 = {
    "t5-v1_1-tiny": (2, 128, 4, 32, 256),
    "t5-v1_1-small": (8, 512, 6, 64, 1024),
    "t5-v1_1-base": (12, 768, 12, 64, 2048),
    "t5-v1_1-large": (24, 1024, 16, 64, 2816),
}

for _version, _sizes in (("1.0", _V1_0), ("1.1", _V1_1)):
    for _name, (_layers, _hidden, _heads, _head_dim, _ffn) in _sizes.items():
        _model = {"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "head_dim": _head_dim,
                  "intermediate_size": _ffn}
        if _version == "1.1":
            _model.update(hidden_act="gelu_tanh", gated_ffn=True, tie_word_embeddings=False, hidden_dropout=0.0,
                          attention_dropout=0.0)
        PRESETS.append(Preset(
            name=_name,
            family="t5",
            model=_model,
            objectives={"span_corruption": {}},
            seq_len=128 if "tiny" in _name else 512,
            description=f"T5 v{_version} encoder-decoder, {_layers}+{_layers} layers x {_hidden} hidden, "
                        "span corruption",
        ))
