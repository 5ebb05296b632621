"""BERT <-> Hugging Face ``bert``: BertModel, BertForPreTraining, BertForMaskedLM,
BertForNextSentencePrediction and BertForSequenceClassification.

ptmzoo's BERT is the same network as HF's; only names differ, and the three attention
projections are one fused ``qkv`` Linear here. Heads: the MLM head (transform + decoder tied to
the word embeddings + output bias), NSP on the pooled state, and sequence classification on the
pooled state (ptmzoo pooling "cls" with the pooler).
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
    StateDictAdapter,
    heads_of_kind,
    linear,
    register_adapter,
)

# ptmzoo BertConfig field <-> HF BertConfig field (same meaning, same value)
_SAME = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
         "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
         "hidden_dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob",
         "max_position_embeddings": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
         "initializer_range": "initializer_range", "layer_norm_eps": "layer_norm_eps"}

# HF classes whose heads ptmzoo has, by the set of ptmzoo head kinds
_ARCHITECTURES = {frozenset(): "BertModel", frozenset({"mlm", "nsp"}): "BertForPreTraining",
                  frozenset({"mlm"}): "BertForMaskedLM", frozenset({"nsp"}): "BertForNextSentencePrediction",
                  frozenset({"classification"}): "BertForSequenceClassification"}


@register_adapter
class BertAdapter(StateDictAdapter):
    family = "bert"
    model_type = "bert"
    base_prefix = "bert."
    base_architecture = "BertModel"
    architectures = tuple(_ARCHITECTURES.values())
    ignored = re.compile(r"embeddings\.position_ids$")  # a buffer that older transformers saved

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        for key, ok in (("is_decoder", False), ("add_cross_attention", False),
                        ("position_embedding_type", "absolute")):
            if hf.get(key, ok) != ok:
                raise UserError(f"{where}: {key}={hf[key]!r} is not supported; ptmzoo's BERT is an encoder with "
                                "absolute positions")
        act = hf.get("hidden_act", "gelu")
        if act not in HF_ACTIVATIONS:
            raise UserError(f"{where}: hidden_act {act!r} is not supported (known: {', '.join(HF_ACTIVATIONS)})")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = {ptm: hf[key] for ptm, key in _SAME.items() if key in hf}
        config["hidden_act"] = HF_ACTIVATIONS[hf.get("hidden_act", "gelu")]
        config["add_pooler"] = "pooler.dense.weight" in keys  # BertForMaskedLM has none
        # padding_idx only stops the pad embedding's gradient; HF allows none, ptmzoo needs an id
        config["pad_token_id"] = hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = {key: getattr(config, ptm) for ptm, key in _SAME.items()}
        hf.update(model_type="bert", hidden_act=PTM_ACTIVATIONS[config.hidden_act],
                  pad_token_id=config.pad_token_id, tie_word_embeddings=True)
        return hf

    # ---- heads --------------------------------------------------------------------------------
    def heads_from_hf(self, hf: dict[str, Any], keys: set[str], architecture: str) -> dict[str, dict]:
        heads: dict[str, dict] = {}
        if "cls.predictions.transform.dense.weight" in keys:
            heads["mlm"] = {"kind": "mlm"}
        if "cls.seq_relationship.weight" in keys:
            heads["nsp"] = {"kind": "nsp"}
        if architecture == "BertForSequenceClassification" and "classifier.weight" in keys:
            dropout = hf.get("classifier_dropout")
            heads["classification"] = {"kind": "classification", "options": {
                "num_labels": int(hf.get("num_labels") or len(hf.get("id2label") or {}) or 2),
                "pooling": "cls",
                "dropout": float(dropout if dropout is not None else hf.get("hidden_dropout_prob", 0.1))}}
        return heads

    def architecture(self, model: PtmModel) -> str:
        kinds = heads_of_kind(model)
        arch = _ARCHITECTURES.get(frozenset(kinds))
        if arch is None:
            raise UserError(f"heads {', '.join(sorted(kinds))} have no single Hugging Face BERT class (supported: "
                            "none, mlm, nsp, mlm+nsp, classification)")
        if "classification" in kinds:
            head = model.heads[kinds["classification"]]
            if not head.use_pooler:
                raise UserError("BertForSequenceClassification classifies the pooled [CLS] state; this classifier "
                                f"uses pooling '{head.pooling}'{'' if model.backbone.has_pooler else ' and no pooler'}")
        if arch in ("BertForPreTraining", "BertForNextSentencePrediction") and not model.backbone.has_pooler:
            raise UserError(f"{arch} needs a pooler, which this model lacks")
        return arch

    def hf_model_kwargs(self, model: PtmModel, architecture: str) -> dict[str, Any]:
        # a bare BertModel without pooler is a constructor flag in HF, not a config field
        return {"add_pooling_layer": False} if architecture == "BertModel" and not model.backbone.has_pooler else {}

    def head_config_to_hf(self, model: PtmModel) -> dict[str, Any]:
        kinds = heads_of_kind(model)
        if "classification" not in kinds:
            return {}
        options = model.heads[kinds["classification"]].options
        return {"num_labels": options["num_labels"], "classifier_dropout": options["dropout"]}

    # ---- weights ------------------------------------------------------------------------------
    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("embeddings.", "encoder.", "pooler."))

    def backbone_params(self, config) -> list[Param]:
        params = [Param("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
                  Param("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
                  Param("embeddings.token_type.weight", ("embeddings.token_type_embeddings.weight",)),
                  *linear("embeddings.norm", "embeddings.LayerNorm")]
        for i in range(config.num_layers):
            ptm, hf = f"layers.{i}", f"encoder.layer.{i}"
            params += [*linear(f"{ptm}.attention.qkv", *(f"{hf}.attention.self.{p}" for p in ("query", "key", "value"))),
                       *linear(f"{ptm}.attention.out", f"{hf}.attention.output.dense"),
                       *linear(f"{ptm}.attention_norm", f"{hf}.attention.output.LayerNorm"),
                       *linear(f"{ptm}.ffn.up", f"{hf}.intermediate.dense"),
                       *linear(f"{ptm}.ffn.down", f"{hf}.output.dense"),
                       *linear(f"{ptm}.ffn_norm", f"{hf}.output.LayerNorm")]
        return params + linear("pooler.dense", "pooler.dense")

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        params: list[Param] = []
        if "mlm" in kinds:  # the decoder weight is tied to the word embeddings on both sides
            name = f"heads.{kinds['mlm']}"
            params += [*linear(f"{name}.dense", "cls.predictions.transform.dense"),
                       *linear(f"{name}.norm", "cls.predictions.transform.LayerNorm"),
                       Param(f"{name}.decoder.bias", ("cls.predictions.bias",))]
        if "nsp" in kinds:
            params += linear(f"heads.{kinds['nsp']}.classifier", "cls.seq_relationship")
        if "classification" in kinds:
            params += linear(f"heads.{kinds['classification']}.classifier", "classifier")
        return params

    def aliases(self, model: PtmModel) -> dict[str, str]:
        if "mlm" not in heads_of_kind(model):
            return {}
        return {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                "cls.predictions.decoder.bias": "cls.predictions.bias"}
