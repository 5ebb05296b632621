"""ALBERT <-> Hugging Face ``albert``: AlbertModel, AlbertForPreTraining (MLM + SOP),
AlbertForMaskedLM and AlbertForSequenceClassification.

HF ALBERT keeps its layers in ``num_hidden_groups`` groups of ``inner_group_num`` layers; layer i
of the network runs group ``i * groups // num_layers``. Of ptmzoo's sharing modes two are such a
layout: ``all`` (one group of one layer) and ``none`` (one group per layer). Other layouts, and
ptmzoo's attention-only or feed-forward-only sharing, have no counterpart and are refused.
The factorized embedding's projection is ``encoder.embedding_hidden_mapping_in`` in HF; the MLM
head maps to the embedding size (dense H -> E, LayerNorm(E), decoder tied to the embeddings).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import UserError
from ...models.model import PtmModel
from .base import Param, linear
from .bert import _BERT_DEFAULTS, EncoderAdapter

_LAYERS = "encoder.albert_layer_groups"


class AlbertAdapter(EncoderAdapter):
    family = "albert"
    model_type = "albert"
    base_prefix = "albert."
    base_architecture = "AlbertModel"
    by_heads: ClassVar[dict[frozenset, str]] = {
        frozenset(): "AlbertModel", frozenset({"mlm", "sop"}): "AlbertForPreTraining",
        frozenset({"mlm"}): "AlbertForMaskedLM", frozenset({"classification"}): "AlbertForSequenceClassification"}
    config_names: ClassVar[dict[str, str]] = {**EncoderAdapter.config_names, "embedding_size": "embedding_size"}
    hf_defaults: ClassVar[dict[str, Any]] = {
        **_BERT_DEFAULTS, "vocab_size": 30000, "embedding_size": 128, "hidden_size": 4096, "num_attention_heads": 64,
        "intermediate_size": 16384, "hidden_act": "gelu_new", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "num_hidden_groups": 1, "inner_group_num": 1}
    required: ClassVar[dict[str, Any]] = {"positions_after_padding": False}
    pooler = "pooler"
    mlm_modules = ("predictions.dense", "predictions.LayerNorm", "predictions.bias", "predictions.decoder")
    sentence_heads: ClassVar[dict[str, str]] = {"sop": "sop_classifier.classifier"}
    classifier_dropout_keys = ("classifier_dropout_prob",)

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        super().check_hf_config(hf, where)
        self.sharing(hf, where)
        sizes = {key: hf.get(key, self.hf_defaults[key]) for key in ("embedding_size", "hidden_size")}
        if sizes["embedding_size"] == sizes["hidden_size"]:
            raise UserError(f"{where}: embedding_size equals hidden_size; ptmzoo projects ALBERT's embeddings "
                            "only when their size differs from the hidden size")

    def sharing(self, hf: dict[str, Any], where: str) -> str:
        layers = hf.get("num_hidden_layers", self.hf_defaults["num_hidden_layers"])
        groups = hf.get("num_hidden_groups", 1)
        inner = hf.get("inner_group_num", 1)
        if inner == 1 and groups in (1, layers):
            return "all" if groups == 1 else "none"
        raise UserError(f"{where}: ALBERT with {groups} layer groups of {inner} layers is not supported; ptmzoo "
                        "reads ALBERT models whose layers are all shared (num_hidden_groups 1) or none "
                        "(num_hidden_groups = num_hidden_layers), with inner_group_num 1")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = super().config_from_hf(hf, keys, where)
        config["share_layers"] = self.sharing(hf, where)
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        if config.share_layers not in ("all", "none"):
            raise UserError(f"Hugging Face ALBERT shares whole layers or nothing; model.share_layers="
                            f"{config.share_layers!r} cannot be exported (use all or none)")
        if config.embedding_size in (None, config.hidden_size):
            raise UserError("Hugging Face ALBERT always projects its embeddings; set model.embedding_size to a size "
                            "other than the hidden size")
        hf = super().config_to_hf(config)
        hf.update(num_hidden_groups=1 if config.share_layers == "all" else config.num_layers, inner_group_num=1,
                  classifier_dropout_prob=0.1)
        return hf

    def architecture(self, model: PtmModel) -> str:
        self.config_to_hf(model.config)  # sharing that HF cannot express ends here, before any weights
        return super().architecture(model)

    # ---- weights ------------------------------------------------------------------------------
    def embedding_params(self, config) -> list[Param]:
        return super().embedding_params(config) + linear("embeddings.project", "encoder.embedding_hidden_mapping_in")

    def layer_params(self, ptm: str, hf: str) -> list[Param]:
        return [*linear(f"{ptm}.attention.qkv", *(f"{hf}.attention.{p}" for p in ("query", "key", "value"))),
                *linear(f"{ptm}.attention.out", f"{hf}.attention.dense"),
                *linear(f"{ptm}.attention_norm", f"{hf}.attention.LayerNorm"),
                *linear(f"{ptm}.ffn.up", f"{hf}.ffn"),
                *linear(f"{ptm}.ffn.down", f"{hf}.ffn_output"),
                *linear(f"{ptm}.ffn_norm", f"{hf}.full_layer_layer_norm")]

    def backbone_params(self, config) -> list[Param]:
        # with all layers shared only layer 0 is listed; the others are the same tensors
        layers = 1 if config.share_layers == "all" else config.num_layers
        params = self.embedding_params(config)
        for i in range(layers):
            params += self.layer_params(f"layers.{i}", f"{_LAYERS}.{i}.albert_layers.0")
        return params
