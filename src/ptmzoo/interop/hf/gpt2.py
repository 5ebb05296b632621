"""GPT-2 <-> Hugging Face ``gpt2``: GPT2Model and GPT2LMHeadModel.

HF GPT-2 keeps OpenAI's ``Conv1D`` layers, whose weights are [in, out]; ptmzoo uses
``nn.Linear`` ([out, in]), so every projection weight is transposed. ``c_attn`` already packs
q, k, v along its output in the order of ptmzoo's fused ``qkv``, so it maps one to one. The
language-model head is tied to the token embeddings unless ``tie_word_embeddings`` is false.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import UserError
from ...models.model import PtmModel
from .base import (
    HF_ACTIVATIONS,
    PTM_ACTIVATIONS,
    Param,
    SingleLMHeadAdapter,
    heads_of_kind,
    linear,
)

_SAME = {"vocab_size": "vocab_size", "hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head",
         "max_position_embeddings": "n_positions", "hidden_dropout": "resid_pdrop",
         "attention_dropout": "attn_pdrop", "layer_norm_eps": "layer_norm_epsilon",
         "initializer_range": "initializer_range", "tie_word_embeddings": "tie_word_embeddings"}

# Settings that change the computation; ptmzoo's GPT-2 is the standard one.
_REQUIRED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}


class GPT2Adapter(SingleLMHeadAdapter):
    family = "gpt2"
    model_type = "gpt2"
    display_name = "gpt2"
    base_prefix = "transformer."
    base_architecture = "GPT2Model"
    lm_head_kind, lm_key, lm_architecture = "clm", "lm_head.weight", "GPT2LMHeadModel"
    architectures = ("GPT2Model", "GPT2LMHeadModel")
    token_key, position_key, final_norm_key = "wte", "wpe", "ln_f"  # GPT-1 names them differently
    ignored = re.compile(r"\.attn\.(bias|masked_bias)$")  # causal-mask buffers of older checkpoints

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        for key, ok in _REQUIRED.items():
            if hf.get(key, ok) != ok:
                raise UserError(f"{where}: {key}={hf[key]!r} is not supported by ptmzoo's GPT-2")
        act = hf.get("activation_function", "gelu_new")
        if act not in HF_ACTIVATIONS:
            raise UserError(f"{where}: activation_function {act!r} is not supported "
                            f"(known: {', '.join(HF_ACTIVATIONS)})")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = {ptm: hf[key] for ptm, key in _SAME.items() if key in hf}
        config["hidden_act"] = HF_ACTIVATIONS[hf.get("activation_function", "gelu_new")]
        # ptmzoo has one dropout for embeddings and residuals (HF: embd_pdrop, resid_pdrop; equal in GPT-2)
        hidden = config.get("hidden_size", 768)
        config["intermediate_size"] = hf.get("n_inner") or 4 * hidden
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        if config.attention_window:
            raise UserError("GPT-3-style banded attention (model.attention_window > 0) has no Hugging Face GPT-2 "
                            "equivalent; only models with attention_window=0 convert")
        hf = {key: getattr(config, ptm) for ptm, key in _SAME.items()}
        hf.update(model_type="gpt2", activation_function=PTM_ACTIVATIONS[config.hidden_act],
                  n_inner=config.intermediate_size, embd_pdrop=config.hidden_dropout)
        if config.vocab_size <= 50256:  # HF's default <|endoftext|> id would lie outside the vocabulary
            hf.update(bos_token_id=None, eos_token_id=None)
        return hf

    # ---- weights ------------------------------------------------------------------------------
    def is_backbone_key(self, key: str) -> bool:
        names = (self.token_key, self.position_key, "h", self.final_norm_key)
        return key.startswith(tuple(f"{name}." for name in names if name))

    def backbone_params(self, config) -> list[Param]:
        params = [Param("token.weight", (f"{self.token_key}.weight",)),
                  Param("position.weight", (f"{self.position_key}.weight",))]
        for i in range(config.num_layers):
            ptm, hf = f"blocks.{i}", f"h.{i}"
            params += [*linear(f"{ptm}.attention_norm", f"{hf}.ln_1"),
                       *linear(f"{ptm}.attention.qkv", f"{hf}.attn.c_attn", transpose=True),
                       *linear(f"{ptm}.attention.out", f"{hf}.attn.c_proj", transpose=True),
                       *linear(f"{ptm}.ffn_norm", f"{hf}.ln_2"),
                       *linear(f"{ptm}.ffn.up", f"{hf}.mlp.c_fc", transpose=True),
                       *linear(f"{ptm}.ffn.down", f"{hf}.mlp.c_proj", transpose=True)]
        return params + (linear("final_norm", self.final_norm_key) if self.final_norm_key else [])

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        if "clm" in kinds and not model.config.tie_word_embeddings:
            return [Param(f"heads.{kinds['clm']}.decoder.weight", ("lm_head.weight",))]
        return []

    def aliases(self, model: PtmModel) -> dict[str, str]:
        if "clm" in heads_of_kind(model) and model.config.tie_word_embeddings:
            return {"lm_head.weight": f"{self.base_prefix}{self.token_key}.weight"}
        return {}
