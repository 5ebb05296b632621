"""XLNet <-> Hugging Face ``xlnet``: XLNetModel and XLNetLMHeadModel (the permutation LM head).

The network is the same; HF keeps each attention projection as one [hidden, heads, head_dim]
tensor used in einsums, ptmzoo as Linears ([out, in]) with q, k and v fused:

===================================================  ================================================
HF (``transformer.`` inside XLNetLMHeadModel)        ptmzoo ``backbone.``
===================================================  ================================================
word_embedding                                       embeddings.layers.0 (one cluster, not scaled)
mask_emb [1, 1, hidden]                              mask_emb [hidden] (the query stream's start)
layer.i.rel_attn.{q,k,v} [hidden, heads, head_dim]   layers.i.attention.qkv (reshaped, transposed)
layer.i.rel_attn.o                                   layers.i.attention.out (reshaped)
layer.i.rel_attn.r                                   layers.i.relative (W_R; reshaped, transposed)
layer.i.rel_attn.r_w_bias / r_r_bias                 layers.i.biases.content (u) / .position (v)
layer.i.rel_attn.r_s_bias / seg_embed                layers.i.biases.segment / .segment_embed
layer.i.rel_attn.layer_norm                          layers.i.attention_norm
layer.i.ff.layer_1 / layer_2 / layer_norm            layers.i.ffn.up / .down / ffn_norm
lm_loss (weight tied, bias)                          heads.plm.decoder
===================================================  ================================================

Config: ``dropout`` is both of ptmzoo's dropouts; ``mem_len`` 0 or null (keep every state) is
ptmzoo's null, and ptmzoo's 0 (no memory) is written as ``use_mems_eval: false``. Refused:
``bi_data`` (the bidirectional data pipeline of pre-training), ``same_length``, a ``d_head`` other
than hidden / heads, and the task heads (sequence summary, SQuAD heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

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

# ptmzoo XLNetConfig field <-> HF XLNetConfig field (same meaning, same value)
_SAME = {"vocab_size": "vocab_size", "hidden_size": "d_model", "num_layers": "n_layer", "num_heads": "n_head",
         "intermediate_size": "d_inner", "layer_norm_eps": "layer_norm_eps", "initializer_range": "initializer_range",
         "reuse_len": "reuse_len", "clamp_len": "clamp_len", "attn_type": "attn_type", "pad_token_id": "pad_token_id",
         "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id"}

# transformers' XLNetConfig defaults, and the other names its attribute_map accepts
_XLNET_DEFAULTS = {"vocab_size": 32000, "d_model": 1024, "n_layer": 24, "n_head": 16, "d_inner": 4096,
                   "ff_activation": "gelu", "attn_type": "bi", "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                   "dropout": 0.1, "mem_len": 512, "reuse_len": None, "use_mems_eval": True, "bi_data": False,
                   "clamp_len": -1, "same_length": False, "pad_token_id": 5, "bos_token_id": 1, "eos_token_id": 2}
_ALIASES = {"n_token": "vocab_size", "hidden_size": "d_model", "num_attention_heads": "n_head",
            "num_hidden_layers": "n_layer"}


@dataclass(frozen=True)
class ReshapedParam(Param):
    """A ptmzoo tensor whose HF pieces have another shape: each piece is viewed as ``flat`` (and
    transposed, with ``transpose``) on the way in and given ``hf_shape`` on the way out."""

    flat: tuple[int, ...] = ()
    hf_shape: tuple[int, ...] = ()

    def to_hf(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = tensor.chunk(len(self.hf), dim=0)
        return {key: (piece.t() if self.transpose else piece).reshape(self.hf_shape).contiguous().clone()
                for key, piece in zip(self.hf, pieces)}

    def from_hf(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        pieces = []
        for key in self.hf:
            if tuple(state[key].shape) != self.hf_shape:
                raise UserError(f"weight {key} has shape {tuple(state[key].shape)}, config.json gives "
                                f"{self.hf_shape}; the weights do not fit config.json")
            piece = state[key].reshape(self.flat)
            pieces.append(piece.t() if self.transpose else piece)
        return (torch.cat(pieces, dim=0) if len(pieces) > 1 else pieces[0]).contiguous()


class XLNetAdapter(SingleLMHeadAdapter):
    family = "xlnet"
    model_type = "xlnet"
    base_prefix = "transformer."
    base_architecture = "XLNetModel"
    architectures = ("XLNetModel", "XLNetLMHeadModel")
    lm_head_kind = "plm"
    display_name = "XLNet"
    lm_key = "lm_loss.bias"
    lm_architecture = "XLNetLMHeadModel"

    # ---- config -------------------------------------------------------------------------------
    def _with_defaults(self, hf: dict[str, Any]) -> dict[str, Any]:
        given = dict(hf)
        given.update({name: given[alias] for alias, name in _ALIASES.items() if alias in given and name not in given})
        return {**_XLNET_DEFAULTS, **given}

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        hf = self._with_defaults(hf)
        for key in ("bi_data", "same_length"):
            if hf[key]:
                raise UserError(f"{where}: {key}=true is not supported; ptmzoo's XLNet runs with {key}=false "
                                "(it only changes pre-training batches or the uni-directional mask)")
        if hf["ff_activation"] not in HF_ACTIVATIONS:
            raise UserError(f"{where}: ff_activation {hf['ff_activation']!r} is not supported "
                            f"(known: {', '.join(HF_ACTIVATIONS)})")
        if hf.get("d_head") not in (None, hf["d_model"] // hf["n_head"]) or hf["d_model"] % hf["n_head"]:
            raise UserError(f"{where}: d_head must be d_model / n_head ({hf['d_model']} / {hf['n_head']})")
        if hf["attn_type"] not in ("bi", "uni"):
            raise UserError(f"{where}: attn_type {hf['attn_type']!r} is not bi or uni")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        hf = self._with_defaults(hf)
        config = {ptm: hf[key] for ptm, key in _SAME.items()}
        mem_len = hf["mem_len"] or None  # HF: 0 and null keep every state
        if not hf["use_mems_eval"]:
            mem_len = 0
        config.update(hidden_act=HF_ACTIVATIONS[hf["ff_activation"]], hidden_dropout=hf["dropout"],
                      attention_dropout=hf["dropout"], mem_len=mem_len, untie_r=True, scale_embeddings=False)
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = {key: getattr(config, ptm) for ptm, key in _SAME.items()}
        hf.update({"model_type": self.model_type, "ff_activation": PTM_ACTIVATIONS[config.hidden_act],
                   "dropout": config.hidden_dropout, "d_head": config.hidden_size // config.num_heads,
                   "mem_len": config.mem_len or None, "use_mems_eval": config.mem_len != 0,
                   "bi_data": False, "same_length": False, "tie_word_embeddings": True})
        return hf

    def check_exportable(self, model: PtmModel) -> None:
        config = model.config
        if not config.untie_r:
            raise UserError("Hugging Face XLNet has u and v in every layer; this model shares them "
                            "(model.untie_r=false) and cannot be exported as xlnet")
        if config.scale_embeddings:
            raise UserError("Hugging Face XLNet does not scale its embeddings; this model has "
                            "model.scale_embeddings=true")
        if config.hidden_dropout != config.attention_dropout:
            raise UserError(f"Hugging Face XLNet has one dropout; this model has model.hidden_dropout="
                            f"{config.hidden_dropout} and model.attention_dropout={config.attention_dropout}")
        if config.hidden_act not in PTM_ACTIVATIONS:
            raise UserError(f"Hugging Face XLNet has no activation {config.hidden_act!r}")

    def architecture(self, model: PtmModel) -> str:
        self.check_exportable(model)
        return super().architecture(model)

    # ---- weights ------------------------------------------------------------------------------
    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("word_embedding.", "mask_emb", "layer."))

    def backbone_params(self, config) -> list[Param]:
        hidden, heads = config.hidden_size, config.num_heads
        per_head = (hidden, heads, hidden // heads)

        def projection(ptm: str, *hf: str, transpose: bool = True) -> ReshapedParam:
            return ReshapedParam(ptm, hf, transpose, flat=(hidden, hidden), hf_shape=per_head)

        params: list[Param] = [Param("embeddings.layers.0.weight", ("word_embedding.weight",)),
                               ReshapedParam("mask_emb", ("mask_emb",), flat=(hidden,), hf_shape=(1, 1, hidden))]
        for i in range(config.num_layers):
            ptm, hf = f"layers.{i}", f"layer.{i}"
            attn = f"{hf}.rel_attn"
            params += [projection(f"{ptm}.attention.qkv.weight", *(f"{attn}.{p}" for p in "qkv")),
                       projection(f"{ptm}.attention.out.weight", f"{attn}.o", transpose=False),
                       projection(f"{ptm}.relative.weight", f"{attn}.r"),
                       Param(f"{ptm}.biases.content", (f"{attn}.r_w_bias",)),
                       Param(f"{ptm}.biases.position", (f"{attn}.r_r_bias",)),
                       Param(f"{ptm}.biases.segment", (f"{attn}.r_s_bias",)),
                       Param(f"{ptm}.biases.segment_embed", (f"{attn}.seg_embed",)),
                       *linear(f"{ptm}.attention_norm", f"{attn}.layer_norm"),
                       *linear(f"{ptm}.ffn.up", f"{hf}.ff.layer_1"),
                       *linear(f"{ptm}.ffn.down", f"{hf}.ff.layer_2"),
                       *linear(f"{ptm}.ffn_norm", f"{hf}.ff.layer_norm")]
        return params

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        return [Param(f"heads.{kinds['plm']}.decoder.bias", ("lm_loss.bias",))] if "plm" in kinds else []

    def aliases(self, model: PtmModel) -> dict[str, str]:
        if "plm" not in heads_of_kind(model):
            return {}
        return {"lm_loss.weight": f"{self.base_prefix}word_embedding.weight"}
