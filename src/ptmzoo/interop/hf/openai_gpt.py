"""GPT-1 <-> Hugging Face ``openai-gpt``: OpenAIGPTModel and OpenAIGPTLMHeadModel.

The same layout as GPT-2 (``Conv1D`` projections, transposed to ``nn.Linear``; q, k, v packed in
``c_attn``) under other names (``tokens_embed``, ``positions_embed``) and without a final
LayerNorm, so the adapter is GPT-2's with those names and its own config mapping. Note that
``afn="gelu"`` in ``openai-gpt`` is the tanh approximation (``gelu_new``), not the exact GELU.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import UserError
from .gpt2 import _SAME, GPT2Adapter

_FROM_HF_ACT = {"gelu": "gelu_tanh", "gelu_new": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}
_TO_HF_ACT = {"gelu_tanh": "gelu", "gelu_new": "gelu", "relu": "relu", "silu": "silu"}


class OpenAIGPTAdapter(GPT2Adapter):
    family = "gpt1"
    model_type = display_name = "openai-gpt"
    base_architecture = "OpenAIGPTModel"
    lm_architecture = "OpenAIGPTLMHeadModel"
    architectures = ("OpenAIGPTModel", "OpenAIGPTLMHeadModel")
    token_key, position_key, final_norm_key = "tokens_embed", "positions_embed", None
    ignored = re.compile(r"(\.attn\.bias|position_ids)$")  # buffers of older checkpoints

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        act = hf.get("afn", "gelu")
        if act not in _FROM_HF_ACT:
            raise UserError(f"{where}: afn {act!r} is not supported (known: {', '.join(_FROM_HF_ACT)})")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = {ptm: hf[key] for ptm, key in _SAME.items() if key in hf}
        config["hidden_act"] = _FROM_HF_ACT[hf.get("afn", "gelu")]
        config["intermediate_size"] = 4 * config.get("hidden_size", 768)  # fixed in openai-gpt
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        if config.intermediate_size != 4 * config.hidden_size or config.hidden_act not in _TO_HF_ACT:
            raise UserError("Hugging Face openai-gpt needs intermediate_size = 4 x hidden_size and a tanh-GELU, "
                            f"ReLU or SiLU activation (this model: {config.intermediate_size}, {config.hidden_act})")
        hf = super().config_to_hf(config)  # also refuses GPT-3-style banded attention
        for key in ("n_inner", "activation_function", "bos_token_id", "eos_token_id"):  # GPT-2 only
            hf.pop(key, None)
        hf.update(model_type=self.model_type, afn=_TO_HF_ACT[config.hidden_act])
        return hf
