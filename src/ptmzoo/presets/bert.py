"""BERT presets: base and large from the paper, and the official miniature sizes (Turc et al.,
2019, "Well-Read Students Learn Better"): 64-dimensional heads, feed-forward of 4 x hidden."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers, hidden)
    "bert-tiny": (2, 128),
    "bert-mini": (4, 256),
    "bert-small": (4, 512),
    "bert-medium": (8, 512),
    "bert-base": (12, 768),
    "bert-large": (24, 1024),
}

for _name, (_layers, _hidden) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="bert",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _hidden // 64,
               "intermediate_size": 4 * _hidden},
        objectives={"mlm": {}, "nsp": {}},
        seq_len=128,
        description=f"BERT encoder, {_layers} layers x {_hidden} hidden, MLM + NSP",
    ))

# RoBERTa (Liu et al., 2019): BERT's sizes, byte-level BPE, dynamic MLM only, full 512-token inputs.
for _name, (_layers, _hidden, _seq_len) in {"roberta-tiny": (2, 128, 128), "roberta-base": (12, 768, 512),
                                            "roberta-large": (24, 1024, 512)}.items():
    PRESETS.append(Preset(
        name=_name,
        family="roberta",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _hidden // 64,
               "intermediate_size": 4 * _hidden},
        objectives={"mlm": {"dynamic": True}},
        seq_len=_seq_len,
        description=f"RoBERTa encoder, {_layers} layers x {_hidden} hidden, dynamic MLM (byte-level BPE)",
    ))

# ALBERT (Lan et al., 2020), Table 1: E = 128 and all layers shared. Heads as in the released
# configs (64-dimensional except xlarge's 16 heads of 128). The paper's parameter counts (12M,
# 18M, 60M, 235M with its 30k vocabulary) are checked in tests/models/test_encoder_variants.py.
_ALBERT = {  # name: (layers, hidden, heads, pre-training length)
    "albert-tiny": (4, 128, 2, 128),
    "albert-base": (12, 768, 12, 512),
    "albert-large": (24, 1024, 16, 512),
    "albert-xlarge": (24, 2048, 16, 512),
    "albert-xxlarge": (12, 4096, 64, 512),
}
for _name, (_layers, _hidden, _heads, _seq_len) in _ALBERT.items():
    _embed = 128 if _hidden >= 768 else 32
    PRESETS.append(Preset(
        name=_name,
        family="albert",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               "embedding_size": _embed, "share_layers": "all"},
        objectives={"mlm": {}, "sop": {}},
        seq_len=_seq_len,
        description=f"ALBERT encoder, {_layers} shared layers x {_hidden} hidden, E={_embed}, MLM + SOP",
    ))

# DistilBERT (Sanh et al., 2019): BERT-base with every other layer, no segments, no pooler.
PRESETS.append(Preset(
    name="distilbert-base",
    family="distilbert",
    model={"num_layers": 6, "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072},
    objectives={"mlm": {}},
    seq_len=512,
    description="DistilBERT encoder, 6 layers x 768 hidden (initialise with `ptmzoo init-student`), MLM",
))

# BERT's descendants that differ in their objectives (README: encoder objectives), 512-token inputs:
# SpanBERT (Joshi et al., 2020): single sequences without NSP (so no pooler), span masking + SBO;
# ERNIE 1.0 (Baidu; Sun et al., 2019): ReLU, knowledge masking (a corpus prepared with
# --segmentation) + NSP; StructBERT (Wang et al., 2019): MLM + word structural objective
# (shuffled trigrams put back in order) + sentence structural objective (next / previous /
# other-document segment).
_SPANBERT = ({"add_pooler": False}, {"mlm": {"masking": "span"}, "sbo": {}}, "SpanBERT",
             "span masking + SBO (no NSP)")
_ERNIE = ({"hidden_act": "relu"}, {"mlm": {"masking": "knowledge"}, "nsp": {}}, "ERNIE 1.0 (Baidu)",
          "knowledge masking + NSP")
_STRUCTBERT = ({}, {"mlm": {}, "word_order": {}, "sop": {"classes": 3}}, "StructBERT",
               "MLM + word order + 3-way sentence order")
_DESCENDANTS = {  # name: (layers, hidden, kind)
    "spanbert-base": (12, 768, _SPANBERT),
    "spanbert-large": (24, 1024, _SPANBERT),
    "ernie-1.0-base": (12, 768, _ERNIE),
    "structbert-base": (12, 768, _STRUCTBERT),
    "structbert-large": (24, 1024, _STRUCTBERT),
}
for _name, (_layers, _hidden, (_config, _objectives, _model_name, _what)) in _DESCENDANTS.items():
    PRESETS.append(Preset(
        name=_name,
        family="bert",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _hidden // 64,
               "intermediate_size": 4 * _hidden, **_config},
        objectives=_objectives,
        seq_len=512,
        description=f"{_model_name} encoder, {_layers} layers x {_hidden} hidden, {_what}",
    ))

# NEZHA (Huawei; Wei et al., 2019): Chinese BERT-base without a position table -- functional
# (sinusoidal) relative positions clipped at 64 in every layer -- pre-trained with whole-word
# masking (a corpus prepared with --segmentation) and NSP on Chinese BERT's 21,128-token vocabulary.
PRESETS.append(Preset(
    name="nezha-base",
    family="bert",
    model={"num_layers": 12, "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072, "vocab_size": 21128,
           "relative_positions": "nezha", "max_relative_position": 64},
    objectives={"mlm": {"masking": "whole_word"}, "nsp": {}},
    seq_len=512,
    description="NEZHA encoder, 12 layers x 768 hidden, functional relative positions, whole-word MLM + NSP",
))
