"""BERT <-> Hugging Face ``bert``: BertModel, BertForPreTraining, BertForMaskedLM,
BertForNextSentencePrediction and BertForSequenceClassification.

ptmzoo's BERT is the same network as HF's; only names differ, and the three attention
projections are one fused ``qkv`` Linear here. Heads: the MLM head (transform + decoder tied to
the word embeddings + output bias), NSP on the pooled state, and sequence classification on the
pooled state (ptmzoo pooling "cls" with the pooler).

``EncoderAdapter`` holds what the BERT-like families (RoBERTa, ALBERT, DistilBERT) share as
tables of names; their adapters override the tables and the per-layer key names.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ...errors import UserError
from ...models.model import PtmModel
from .base import (
    HF_ACTIVATIONS,
    PTM_ACTIVATIONS,
    Param,
    StateDictAdapter,
    heads_of_kind,
    linear,
)

# ptmzoo BertConfig field <-> HF BertConfig field (same meaning, same value)
_SAME = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
         "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
         "hidden_dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob",
         "max_position_embeddings": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
         "initializer_range": "initializer_range", "layer_norm_eps": "layer_norm_eps"}

# transformers' BertConfig defaults: what a config.json that leaves a key out means
_BERT_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                  "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
                  "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}


class EncoderAdapter(StateDictAdapter):
    """A BERT-like encoder: config names, heads and the pooler described by class tables."""

    config_names: ClassVar[dict[str, str]] = _SAME  # ptmzoo field -> HF field
    hf_defaults: ClassVar[dict[str, Any]] = _BERT_DEFAULTS
    act_key: ClassVar[str] = "hidden_act"
    layer_prefix: ClassVar[str] = "encoder.layer"  # HF name of the list of layers
    # HF classes whose heads ptmzoo has, by the set of ptmzoo head kinds
    by_heads: ClassVar[dict[frozenset, str]]
    # HF module of the pooler's dense layer inside the backbone (None: the HF model has none) and,
    # where *ForSequenceClassification keeps that layer in its classifier instead, that module
    pooler: ClassVar[str | None] = "pooler.dense"
    classifier_pooler: ClassVar[str | None] = None
    pooler_act: ClassVar[str] = "tanh"
    # ptmzoo head kinds whose HF class builds its backbone without a pooler (``*ForMaskedLM`` passes
    # add_pooling_layer=False): the in-memory HF model has no place for the pooler (no MLM head reads
    # it); exported files keep it, so that it survives ptmzoo -> HF files -> ptmzoo
    poolerless_heads: ClassVar[frozenset] = frozenset({"mlm"})
    # ptmzoo config values that the HF family always has
    required: ClassVar[dict[str, Any]] = {"embedding_size": None, "share_layers": "none",
                                          "positions_after_padding": False}
    # MLM head: transform dense, transform LayerNorm, output bias, decoder (tied to the embeddings)
    mlm_modules: ClassVar[tuple[str, str, str, str]] = (
        "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.bias",
        "cls.predictions.decoder")
    sentence_heads: ClassVar[dict[str, str]] = {"nsp": "cls.seq_relationship"}  # kind -> HF Linear
    classifier: ClassVar[str] = "classifier"
    classifier_dropout_keys: ClassVar[tuple[str, ...]] = ("classifier_dropout", "hidden_dropout_prob")
    ignored = re.compile(r"embeddings\.(position_ids|token_type_ids)$")  # buffers older transformers saved

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(self.by_heads.values())

    # ---- config -------------------------------------------------------------------------------
    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        for key, ok in (("is_decoder", False), ("add_cross_attention", False),
                        ("position_embedding_type", "absolute")):
            if hf.get(key, ok) != ok:
                raise UserError(f"{where}: {key}={hf[key]!r} is not supported; ptmzoo's {self.family} is an "
                                "encoder with absolute positions")
        act = hf.get(self.act_key, self.hf_defaults[self.act_key])
        if act not in HF_ACTIVATIONS:
            raise UserError(f"{where}: {self.act_key} {act!r} is not supported (known: {', '.join(HF_ACTIVATIONS)})")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        hf = {**self.hf_defaults, **{k: v for k, v in hf.items() if v is not None}}
        config = {ptm: hf[key] for ptm, key in self.config_names.items() if key in hf}
        config["hidden_act"] = HF_ACTIVATIONS[hf[self.act_key]]
        config["add_pooler"] = any(f"{m}.weight" in keys for m in (self.pooler, self.classifier_pooler) if m)
        config["pooler_act"] = self.pooler_act
        # padding_idx only stops the pad embedding's gradient; HF allows none (the default then), ptmzoo needs an id
        config["pad_token_id"] = hf["pad_token_id"]
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = {key: getattr(config, ptm) for ptm, key in self.config_names.items()}
        hf.update({"model_type": self.model_type, self.act_key: PTM_ACTIVATIONS[config.hidden_act],
                   "pad_token_id": config.pad_token_id, "tie_word_embeddings": True})
        return hf

    def check_exportable(self, model: PtmModel) -> None:
        """Raise a ``UserError`` for settings the HF family cannot express."""
        config = model.config
        if config.relative_positions:
            raise UserError(f"Hugging Face {self.model_type} models have a position table; this model has NEZHA's "
                            f"relative positions (model.relative_positions={config.relative_positions!r})")
        for name, value in self.required.items():
            if getattr(config, name) != value:
                raise UserError(f"Hugging Face {self.model_type} models have {name}={value!r}; this model has "
                                f"model.{name}={getattr(config, name)!r} and cannot be exported as {self.model_type}")
        if "type_vocab_size" in self.config_names and config.type_vocab_size < 1:
            raise UserError(f"Hugging Face {self.model_type} models have segment embeddings; this model has none")
        if model.backbone.has_pooler and config.pooler_act != self.pooler_act:
            raise UserError(f"Hugging Face {self.model_type} pools with {self.pooler_act}, this model with "
                            f"{config.pooler_act}")

    # ---- heads --------------------------------------------------------------------------------
    def heads_from_hf(self, hf: dict[str, Any], keys: set[str], architecture: str) -> dict[str, dict]:
        heads: dict[str, dict] = {}
        if f"{self.mlm_modules[0]}.weight" in keys:
            heads["mlm"] = {"kind": "mlm"}
        for kind, module in self.sentence_heads.items():
            if f"{module}.weight" in keys:
                heads[kind] = {"kind": kind}
        if architecture.endswith("ForSequenceClassification") and f"{self.classifier}.weight" in keys:
            dropout = next((hf[k] for k in self.classifier_dropout_keys if hf.get(k) is not None), 0.1)
            heads["classification"] = {"kind": "classification", "options": {
                "num_labels": int(hf.get("num_labels") or len(hf.get("id2label") or {}) or 2),
                "pooling": "cls", "dropout": float(dropout)}}
        return heads

    def architecture(self, model: PtmModel) -> str:
        self.check_exportable(model)
        kinds = heads_of_kind(model)
        arch = self.by_heads.get(frozenset(kinds))
        if arch is None:
            supported = ", ".join("+".join(sorted(k)) or "none" for k in self.by_heads)
            raise UserError(f"heads {', '.join(sorted(kinds))} have no single Hugging Face {self.model_type} class "
                            f"(supported: {supported})")
        if "classification" in kinds:
            head = model.heads[kinds["classification"]]
            if not head.use_pooler:
                raise UserError(f"{arch} classifies the pooled [CLS] state; this classifier uses pooling "
                                f"'{head.pooling}'{'' if model.backbone.has_pooler else ' and no pooler'}")
        needs_pooler = any(kind in kinds for kind in self.sentence_heads)
        if needs_pooler and not model.backbone.has_pooler:
            raise UserError(f"{arch} needs a pooler, which this model lacks")
        return arch

    def hf_model_kwargs(self, model: PtmModel, architecture: str) -> dict[str, Any]:
        # a bare model without pooler is a constructor flag in HF, not a config field
        bare = architecture == self.base_architecture and self.pooler is not None
        return {"add_pooling_layer": False} if bare and not model.backbone.has_pooler else {}

    def head_config_to_hf(self, model: PtmModel) -> dict[str, Any]:
        kinds = heads_of_kind(model)
        if "classification" not in kinds:
            return {}
        options = model.heads[kinds["classification"]].options
        return {"num_labels": options["num_labels"], self.classifier_dropout_keys[0]: options["dropout"]}

    # ---- weights ------------------------------------------------------------------------------
    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("embeddings.", "encoder.", "pooler."))

    def embedding_params(self, config) -> list[Param]:
        params = [Param("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
                  Param("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
                  *linear("embeddings.norm", "embeddings.LayerNorm")]
        if config.type_vocab_size:
            params.append(Param("embeddings.token_type.weight", ("embeddings.token_type_embeddings.weight",)))
        return params

    def layer_params(self, ptm: str, hf: str) -> list[Param]:
        """One layer's weights: ptmzoo prefix ``ptm`` (e.g. ``layers.3``) and HF prefix ``hf``."""
        return [*linear(f"{ptm}.attention.qkv", *(f"{hf}.attention.self.{p}" for p in ("query", "key", "value"))),
                *linear(f"{ptm}.attention.out", f"{hf}.attention.output.dense"),
                *linear(f"{ptm}.attention_norm", f"{hf}.attention.output.LayerNorm"),
                *linear(f"{ptm}.ffn.up", f"{hf}.intermediate.dense"),
                *linear(f"{ptm}.ffn.down", f"{hf}.output.dense"),
                *linear(f"{ptm}.ffn_norm", f"{hf}.output.LayerNorm")]

    def backbone_params(self, config) -> list[Param]:
        params = self.embedding_params(config)
        for i in range(config.num_layers):
            params += self.layer_params(f"layers.{i}", f"{self.layer_prefix}.{i}")
        return params

    def params(self, model: PtmModel) -> list[Param]:
        # the pooler is placed here: some classes keep it outside the backbone (in the classifier)
        return super().params(model) + self.pooler_params(model)

    def pooler_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        if "classification" in kinds and self.classifier_pooler:
            return linear("backbone.pooler.dense", self.classifier_pooler)
        if self.pooler is None:
            return []
        return linear("backbone.pooler.dense", (self.base_prefix if model.heads else "") + self.pooler)

    def absent_in_hf_class(self, model: PtmModel) -> set[str]:
        kinds = heads_of_kind(model)
        if not kinds or not frozenset(kinds) <= self.poolerless_heads:
            return set()
        return {key for param in self.pooler_params(model) for key in param.hf}

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        params: list[Param] = []
        if "mlm" in kinds:  # the decoder weight is tied to the word embeddings on both sides
            name = f"heads.{kinds['mlm']}"
            dense, norm, bias, _ = self.mlm_modules
            params += [*linear(f"{name}.dense", dense), *linear(f"{name}.norm", norm),
                       Param(f"{name}.decoder.bias", (bias,))]
        for kind, module in self.sentence_heads.items():
            if kind in kinds:
                params += linear(f"heads.{kinds[kind]}.classifier", module)
        if "classification" in kinds:
            params += linear(f"heads.{kinds['classification']}.classifier", self.classifier)
        return params

    def aliases(self, model: PtmModel) -> dict[str, str]:
        if "mlm" not in heads_of_kind(model):
            return {}
        _, _, bias, decoder = self.mlm_modules
        aliases = {f"{decoder}.weight": f"{self.base_prefix}embeddings.word_embeddings.weight"}
        if bias != f"{decoder}.bias":
            aliases[f"{decoder}.bias"] = bias
        return aliases


class BertAdapter(EncoderAdapter):
    family = "bert"
    model_type = "bert"
    base_prefix = "bert."
    base_architecture = "BertModel"
    by_heads: ClassVar[dict[frozenset, str]] = {
        frozenset(): "BertModel", frozenset({"mlm", "nsp"}): "BertForPreTraining",
        frozenset({"mlm"}): "BertForMaskedLM", frozenset({"nsp"}): "BertForNextSentencePrediction",
        frozenset({"classification"}): "BertForSequenceClassification"}
