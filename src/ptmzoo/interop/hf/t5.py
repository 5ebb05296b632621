"""T5 <-> Hugging Face ``t5``: T5Model and T5ForConditionalGeneration, v1.0 and v1.1 configs.

ptmzoo's T5 computes what HF's does; the differences are names, the fused key/value projection
(HF ``k`` and ``v`` are concatenated), and where the relative position bias lives: HF keeps it
in the first block of each stack, ptmzoo on the stack (both share it across layers). v1.0
(``feed_forward_proj="relu"``, tied output layer) and v1.1 (``"gated-gelu"``, untied) differ
only by config. HF's ``gated-gelu`` is the tanh approximation of GELU.
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from ...models.model import PtmModel
from .base import (
    HF_ACTIVATIONS,
    PTM_ACTIVATIONS,
    EncoderDecoderAdapter,
    Param,
    heads_of_kind,
)

_SAME = {"vocab_size": "vocab_size", "hidden_size": "d_model", "num_layers": "num_layers",
         "num_decoder_layers": "num_decoder_layers", "num_heads": "num_heads", "head_dim": "d_kv",
         "intermediate_size": "d_ff", "relative_attention_num_buckets": "relative_attention_num_buckets",
         "relative_attention_max_distance": "relative_attention_max_distance",
         "layer_norm_eps": "layer_norm_epsilon", "initializer_range": "initializer_factor",
         "tie_word_embeddings": "tie_word_embeddings", "scale_decoder_outputs": "scale_decoder_outputs",
         "pad_token_id": "pad_token_id",
         "eos_token_id": "eos_token_id", "decoder_start_token_id": "decoder_start_token_id"}


def _weight(ptm: str, hf: str) -> list[Param]:
    return [Param(f"{ptm}.weight", (f"{hf}.weight",))]  # T5 has no biases


def _attention(ptm: str, hf: str) -> list[Param]:
    return [Param(f"{ptm}.q.weight", (f"{hf}.q.weight",)), Param(f"{ptm}.kv.weight", (f"{hf}.k.weight", f"{hf}.v.weight")),
            Param(f"{ptm}.out.weight", (f"{hf}.o.weight",))]


class T5Adapter(EncoderDecoderAdapter):
    family = "t5"
    model_type = "t5"
    base_prefix = ""  # T5ForConditionalGeneration holds the backbone's modules directly
    base_architecture = "T5Model"
    architectures = ("T5Model", "T5ForConditionalGeneration")
    display_name, lm_key, lm_architecture = "T5", "lm_head.weight", "T5ForConditionalGeneration"

    @staticmethod
    def _activation(hf: dict[str, Any]) -> tuple[str, bool]:
        proj = hf.get("feed_forward_proj", "relu")
        gated = proj.startswith("gated-")
        name = "gelu_new" if proj == "gated-gelu" else proj.removeprefix("gated-")  # as HF's T5Config
        return name, gated

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        act, _ = self._activation(hf)
        if act not in HF_ACTIVATIONS:
            raise UserError(f"{where}: feed_forward_proj {hf.get('feed_forward_proj')!r} is not supported "
                            f"(known: relu, gelu, gated-gelu, gated-relu, gated-silu)")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = {ptm: hf[key] for ptm, key in _SAME.items() if key in hf}
        act, gated = self._activation(hf)
        config.update(hidden_act=HF_ACTIVATIONS[act], gated_ffn=gated)
        dropout = hf.get("dropout_rate", 0.1)
        config.update(hidden_dropout=dropout, attention_dropout=dropout)  # T5 has one dropout rate
        # Before transformers 5, tie_word_embeddings=false meant untied and unscaled (v1.1)
        config.setdefault("scale_decoder_outputs", config.get("tie_word_embeddings", True))
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = {key: getattr(config, ptm) for ptm, key in _SAME.items()}
        if config.scale_decoder_outputs is None:
            hf["scale_decoder_outputs"] = config.tie_word_embeddings
        act = PTM_ACTIVATIONS[config.hidden_act]
        if config.gated_ffn:
            proj = "gated-gelu" if act == "gelu_new" else f"gated-{act}"
        elif act in ("relu", "gelu"):
            proj = act
        else:
            raise UserError(f"T5 with hidden_act {config.hidden_act!r} has no Hugging Face form")
        if config.attention_dropout != config.hidden_dropout:
            raise UserError("Hugging Face T5 has one dropout rate; set attention_dropout = hidden_dropout")
        hf.update(model_type="t5", feed_forward_proj=proj, dropout_rate=config.hidden_dropout,
                  num_decoder_layers=config.num_decoder_layers or config.num_layers,
                  decoder_start_token_id=config.decoder_start_token_id if config.decoder_start_token_id is not None
                  else config.pad_token_id, is_encoder_decoder=True)
        return hf

    def hf_model_kwargs(self, model: PtmModel, architecture: str) -> dict[str, Any]:
        import transformers

        if model.heads and not model.config.tie_word_embeddings and \
                hasattr(transformers.T5Config(), "scale_decoder_outputs"):
            raise UserError("this transformers version always ties T5's output layer to the embeddings, so an "
                            "untied T5 cannot be built in memory; write it with export_hf (`ptmzoo convert`)")
        return {}

    # ---- weights ------------------------------------------------------------------------------

    def backbone_params(self, config) -> list[Param]:
        params = [Param("shared.weight", ("shared.weight",))]
        for stack in ("encoder", "decoder"):
            decoder = stack == "decoder"
            params += _weight(f"{stack}.relative_bias.embedding",
                              f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias")
            layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
            for i in range(layers):
                ptm, hf = f"{stack}.blocks.{i}", f"{stack}.block.{i}.layer"
                ffn = f"{hf}.{2 if decoder else 1}"
                params += [*_attention(f"{ptm}.self_attention", f"{hf}.0.SelfAttention"),
                           *_weight(f"{ptm}.self_norm", f"{hf}.0.layer_norm"),
                           *_weight(f"{ptm}.ffn_norm", f"{ffn}.layer_norm"),
                           *_weight(f"{ptm}.ffn.down", f"{ffn}.DenseReluDense.wo")]
                if config.gated_ffn:
                    params += [*_weight(f"{ptm}.ffn.up", f"{ffn}.DenseReluDense.wi_0"),
                               *_weight(f"{ptm}.ffn.gate", f"{ffn}.DenseReluDense.wi_1")]
                else:
                    params += _weight(f"{ptm}.ffn.up", f"{ffn}.DenseReluDense.wi")
                if decoder:
                    params += [*_attention(f"{ptm}.cross_attention", f"{hf}.1.EncDecAttention"),
                               *_weight(f"{ptm}.cross_norm", f"{hf}.1.layer_norm")]
            params += _weight(f"{stack}.final_norm", f"{stack}.final_layer_norm")
        return params

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        if "seq2seq_lm" in kinds and not model.config.tie_word_embeddings:
            return [Param(f"heads.{kinds['seq2seq_lm']}.decoder.weight", ("lm_head.weight",))]
        return []

    def aliases(self, model: PtmModel) -> dict[str, str]:
        tied = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}
        if "seq2seq_lm" in heads_of_kind(model) and model.config.tie_word_embeddings:
            tied["lm_head.weight"] = "shared.weight"
        return tied
