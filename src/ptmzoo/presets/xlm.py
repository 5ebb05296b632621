"""XLM presets (Lample & Conneau, 2019): a BERT encoder with language embeddings over a shared BPE
vocabulary, pre-trained with MLM on monolingual streams and TLM on translation pairs. The
languages are ``model.languages`` (language id = position in that list). The MLM/TLM head is XLM's
prediction layer (the tied vocabulary projection, no transform), so runs export to Hugging Face's
XLMWithLMHeadModel."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_SIZES = {  # name: (layers, hidden, heads, sequence length)
    "xlm-tiny": (2, 128, 2, 128),
    "xlm-base": (12, 1024, 8, 256),  # the paper's XNLI models: 1024 hidden, 8 heads, GELU
}

for _name, (_layers, _hidden, _heads, _seq) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="xlm",
        model={"num_layers": _layers, "hidden_size": _hidden, "num_heads": _heads, "intermediate_size": 4 * _hidden,
               "languages": ["en", "zh"], "lm_head_transform": False},  # XLM's prediction layer: the projection
        objectives={"tlm": {}},
        seq_len=_seq,
        description=f"XLM, {_layers} layers x {_hidden} hidden, language embeddings, translation LM (TLM)",
    ))
