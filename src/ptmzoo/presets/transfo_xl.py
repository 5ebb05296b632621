"""Transformer-XL presets (Dai et al., 2019): the WikiText-103 base model of the paper's Table 1
(151M parameters) and a tiny one for tests (a 32,000-token vocabulary, one softmax). ``seq_len`` is the training segment length (tgt_len), ``mem_len`` the memory
of the same length, as in the released training scripts; evaluation may use a longer memory
(``ptmzoo evaluate --perplexity FILE --mem-len N``). The WikiText-103 vocabulary (267,735 words)
uses the adaptive input and softmax with cutoffs at 20k, 40k and 200k."""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_WT103 = {"vocab_size": 267735, "cutoffs": [20000, 40000, 200000]}
_SIZES = {  # name: (model, segment length, what the paper reports)
    "transfo-xl-tiny": ({"vocab_size": 32000, "num_layers": 2, "hidden_size": 128, "num_heads": 2,
                         "intermediate_size": 512, "mem_len": 64}, 64, "for tests"),
    # run_wt103_base.sh: 16 layers, d_model 410, 10 heads of 41, d_inner 2100, dropout 0.1, tgt_len = mem_len = 150
    "transfo-xl-base": ({**_WT103, "num_layers": 16, "hidden_size": 410, "num_heads": 10, "intermediate_size": 2100,
                         "div_val": 1, "mem_len": 150}, 150, "WikiText-103, 151M in the paper"),
}

for _name, (_model, _seq_len, _what) in _SIZES.items():
    PRESETS.append(Preset(
        name=_name,
        family="transfo_xl",
        model=_model,
        objectives={"xl_lm": {}},
        seq_len=_seq_len,
        description=f"Transformer-XL, {_model['num_layers']} layers x {_model['hidden_size']} hidden, memory "
                    f"{_model['mem_len']}, segment-level recurrence LM ({_what})",
    ))
