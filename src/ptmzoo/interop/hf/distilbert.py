"""DistilBERT <-> Hugging Face ``distilbert``: DistilBertModel, DistilBertForMaskedLM and
DistilBertForSequenceClassification.

BERT's layers under other names (``q_lin``, ``sa_layer_norm``, ``ffn.lin1`` ...) and config keys
(``dim``, ``n_layers``, ``hidden_dim``, ``activation``); no segment embeddings, no pooler, and
LayerNorm epsilon fixed at 1e-12. The classifier reads the first token through ``pre_classifier``
and a ReLU: in ptmzoo, a pooler with ``pooler_act: relu`` followed by the classification head.
Sinusoidal position tables (``sinusoidal_pos_embds``) are not supported.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import UserError
from .base import Param, linear
from .bert import EncoderAdapter

_EPS = 1e-12  # HF DistilBERT's LayerNorms, not configurable


class DistilBertAdapter(EncoderAdapter):
    family = "distilbert"
    model_type = "distilbert"
    base_prefix = "distilbert."
    base_architecture = "DistilBertModel"
    by_heads: ClassVar[dict[frozenset, str]] = {
        frozenset(): "DistilBertModel", frozenset({"mlm"}): "DistilBertForMaskedLM",
        frozenset({"classification"}): "DistilBertForSequenceClassification"}
    config_names: ClassVar[dict[str, str]] = {
        "vocab_size": "vocab_size", "hidden_size": "dim", "num_layers": "n_layers", "num_heads": "n_heads",
        "intermediate_size": "hidden_dim", "hidden_dropout": "dropout", "attention_dropout": "attention_dropout",
        "max_position_embeddings": "max_position_embeddings", "initializer_range": "initializer_range"}
    hf_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 30522, "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "dropout": 0.1,
        "attention_dropout": 0.1, "max_position_embeddings": 512, "initializer_range": 0.02, "activation": "gelu",
        "pad_token_id": 0}
    act_key = "activation"
    required: ClassVar[dict[str, Any]] = {"embedding_size": None, "share_layers": "none",
                                          "positions_after_padding": False, "type_vocab_size": 0,
                                          "layer_norm_eps": _EPS}
    layer_prefix = "transformer.layer"
    pooler = None
    classifier_pooler = "pre_classifier"
    pooler_act = "relu"
    mlm_modules = ("vocab_transform", "vocab_layer_norm", "vocab_projector.bias", "vocab_projector")
    sentence_heads: ClassVar[dict[str, str]] = {}
    classifier_dropout_keys = ("seq_classif_dropout",)

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        super().check_hf_config(hf, where)
        if hf.get("sinusoidal_pos_embds"):
            raise UserError(f"{where}: sinusoidal_pos_embds is not supported; ptmzoo's DistilBERT learns its "
                            "position embeddings")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = super().config_from_hf(hf, keys, where)
        config.update(type_vocab_size=0, layer_norm_eps=_EPS)
        return config

    def check_exportable(self, model) -> None:
        super().check_exportable(model)
        if model.backbone.has_pooler and "classification" not in model.heads:
            raise UserError("DistilBertModel has no pooler; only DistilBertForSequenceClassification has one "
                            "(pre_classifier), for the classification head")

    # ---- weights ------------------------------------------------------------------------------
    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("embeddings.", "transformer."))

    def layer_params(self, ptm: str, hf: str) -> list[Param]:
        return [*linear(f"{ptm}.attention.qkv", *(f"{hf}.attention.{p}_lin" for p in ("q", "k", "v"))),
                *linear(f"{ptm}.attention.out", f"{hf}.attention.out_lin"),
                *linear(f"{ptm}.attention_norm", f"{hf}.sa_layer_norm"),
                *linear(f"{ptm}.ffn.up", f"{hf}.ffn.lin1"),
                *linear(f"{ptm}.ffn.down", f"{hf}.ffn.lin2"),
                *linear(f"{ptm}.ffn_norm", f"{hf}.output_layer_norm")]
