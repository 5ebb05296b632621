"""BART <-> Hugging Face ``bart``: BartModel and BartForConditionalGeneration.

Same network, other names; HF's separate key and value projections are ptmzoo's fused ``kv``.
The output layer is tied to the shared embeddings on both sides and ``final_logits_bias`` (a
buffer in both) is the LM head's. ptmzoo has one head count and one feed-forward size for
encoder and decoder, and applies no dropout inside the feed-forward network
(``activation_dropout``, a training-only setting, is ignored).
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
    linear,
)

_SAME = {"vocab_size": "vocab_size", "hidden_size": "d_model", "num_layers": "encoder_layers",
         "num_decoder_layers": "decoder_layers", "num_heads": "encoder_attention_heads",
         "intermediate_size": "encoder_ffn_dim", "hidden_dropout": "dropout",
         "attention_dropout": "attention_dropout", "max_position_embeddings": "max_position_embeddings",
         "initializer_range": "init_std", "scale_embedding": "scale_embedding", "pad_token_id": "pad_token_id",
         "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
         "decoder_start_token_id": "decoder_start_token_id"}
_PAIRED = {"encoder_attention_heads": "decoder_attention_heads", "encoder_ffn_dim": "decoder_ffn_dim"}


def _attention(ptm: str, hf: str) -> list[Param]:
    return [*linear(f"{ptm}.q", f"{hf}.q_proj"), *linear(f"{ptm}.kv", f"{hf}.k_proj", f"{hf}.v_proj"),
            *linear(f"{ptm}.out", f"{hf}.out_proj")]


class BartAdapter(EncoderDecoderAdapter):
    family = "bart"
    model_type = "bart"
    base_prefix = "model."
    base_architecture = "BartModel"
    architectures = ("BartModel", "BartForConditionalGeneration")
    display_name, lm_key, lm_architecture = "BART", "final_logits_bias", "BartForConditionalGeneration"

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        for encoder_key, decoder_key in _PAIRED.items():
            if encoder_key in hf and hf.get(decoder_key, hf[encoder_key]) != hf[encoder_key]:
                raise UserError(f"{where}: {encoder_key} != {decoder_key} is not supported; ptmzoo's BART has "
                                "the same size in encoder and decoder")
        act = hf.get("activation_function", "gelu")
        if act not in HF_ACTIVATIONS:
            raise UserError(f"{where}: activation_function {act!r} is not supported "
                            f"(known: {', '.join(HF_ACTIVATIONS)})")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = {ptm: hf[key] for ptm, key in _SAME.items() if key in hf}
        config["hidden_act"] = HF_ACTIVATIONS[hf.get("activation_function", "gelu")]
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = {key: getattr(config, ptm) for ptm, key in _SAME.items()}
        hf.update({decoder: hf[encoder] for encoder, decoder in _PAIRED.items()})
        hf.update(model_type="bart", activation_function=PTM_ACTIVATIONS[config.hidden_act], activation_dropout=0.0,
                  decoder_layers=config.num_decoder_layers or config.num_layers,
                  decoder_start_token_id=config.decoder_start_token_id if config.decoder_start_token_id is not None
                  else config.eos_token_id, forced_eos_token_id=None, is_encoder_decoder=True,
                  tie_word_embeddings=True)
        return hf

    # ---- weights ------------------------------------------------------------------------------

    def backbone_params(self, config) -> list[Param]:
        params = [Param("shared.weight", ("shared.weight",))]
        for stack in ("encoder", "decoder"):
            decoder = stack == "decoder"
            params += [Param(f"{stack}.position.weight", (f"{stack}.embed_positions.weight",)),
                       *linear(f"{stack}.embed_norm", f"{stack}.layernorm_embedding")]
            layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
            for i in range(layers):
                ptm, hf = f"{stack}.layers.{i}", f"{stack}.layers.{i}"
                params += [*_attention(f"{ptm}.self_attention", f"{hf}.self_attn"),
                           *linear(f"{ptm}.self_norm", f"{hf}.self_attn_layer_norm"),
                           *linear(f"{ptm}.ffn.up", f"{hf}.fc1"), *linear(f"{ptm}.ffn.down", f"{hf}.fc2"),
                           *linear(f"{ptm}.ffn_norm", f"{hf}.final_layer_norm")]
                if decoder:
                    params += [*_attention(f"{ptm}.cross_attention", f"{hf}.encoder_attn"),
                               *linear(f"{ptm}.cross_norm", f"{hf}.encoder_attn_layer_norm")]
        return params

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        if "seq2seq_lm" in kinds:
            return [Param(f"heads.{kinds['seq2seq_lm']}.final_logits_bias", ("final_logits_bias",))]
        return []

    def aliases(self, model: PtmModel) -> dict[str, str]:
        prefix = self.base_prefix if model.heads else ""
        tied = {f"{prefix}encoder.embed_tokens.weight": f"{prefix}shared.weight",
                f"{prefix}decoder.embed_tokens.weight": f"{prefix}shared.weight"}
        if "seq2seq_lm" in heads_of_kind(model):
            tied["lm_head.weight"] = "model.shared.weight"
        return tied
