"""ELECTRA <-> Hugging Face ``electra``: ElectraModel, ElectraForPreTraining (the discriminator),
ElectraForMaskedLM (the generator) and ElectraForSequenceClassification.

The encoder has BERT's names under ``electra.``; what differs:

* the embeddings have their own size (``embedding_size``, always in config.json) and are
  projected to the hidden size by ``electra.embeddings_project`` when the two differ;
* the discriminator head is ``discriminator_predictions`` (dense, ``hidden_act``, one logit):
  ptmzoo's ``rtd`` head;
* the generator's LM head is ``generator_predictions`` (dense to E, exact gelu whatever
  ``hidden_act`` says, LayerNorm) and ``generator_lm_head`` (tied to the embeddings, bias);
* the classifier reads the first token through dense + gelu + out_proj: ptmzoo's pooler with
  ``pooler_act: gelu`` followed by the classification head, as DistilBERT's.

HF keeps the generator and the discriminator in two checkpoints (Google released them apart),
each a complete ELECTRA encoder. One of them opens as a ptmzoo ``electra`` model without a
generator; a directory holding ``discriminator/`` and ``generator/`` opens as the pair, the
generator being the model's helper network with the embeddings shared again (``describe_pair``).
Exporting a ptmzoo model that has its generator writes that pair (``export_parts``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from ...errors import UserError
from ...models.model import PtmModel
from .base import Param, heads_of_kind, linear
from .bert import _BERT_DEFAULTS, EncoderAdapter

PARTS = ("discriminator", "generator")  # sub-directories of an exported pair


class ElectraAdapter(EncoderAdapter):
    family = "electra"
    model_type = "electra"
    base_prefix = "electra."
    base_architecture = "ElectraModel"
    by_heads: ClassVar[dict[frozenset, str]] = {
        frozenset(): "ElectraModel", frozenset({"rtd"}): "ElectraForPreTraining",
        frozenset({"mlm"}): "ElectraForMaskedLM", frozenset({"classification"}): "ElectraForSequenceClassification"}
    config_names: ClassVar[dict[str, str]] = {**EncoderAdapter.config_names, "embedding_size": "embedding_size"}
    hf_defaults: ClassVar[dict[str, Any]] = {  # transformers' ElectraConfig (ELECTRA-small's discriminator)
        **_BERT_DEFAULTS, "embedding_size": 128, "hidden_size": 256, "num_attention_heads": 4,
        "intermediate_size": 1024}
    required: ClassVar[dict[str, Any]] = {"share_layers": "none", "positions_after_padding": False}
    pooler = None
    classifier_pooler = "classifier.dense"
    pooler_act = "gelu"
    classifier = "classifier.out_proj"
    mlm_modules = ("generator_predictions.dense", "generator_predictions.LayerNorm", "generator_lm_head.bias",
                   "generator_lm_head")
    sentence_heads: ClassVar[dict[str, str]] = {}
    rtd_modules = ("discriminator_predictions.dense", "discriminator_predictions.dense_prediction")

    # ---- config -------------------------------------------------------------------------------
    @staticmethod
    def _check_lm_head_act(hidden_act: str, where: str) -> None:
        if hidden_act != "gelu":
            raise UserError(f"{where}: ELECTRA's generator head uses gelu but ptmzoo's MLM head uses hidden_act "
                            f"({hidden_act!r}); this generator cannot be converted exactly")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = super().config_from_hf(hf, keys, where)
        if config["embedding_size"] == config["hidden_size"]:
            config["embedding_size"] = None  # ptmzoo: no projection
        if f"{self.mlm_modules[0]}.weight" in keys:
            self._check_lm_head_act(config["hidden_act"], where)
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = super().config_to_hf(config)
        hf["embedding_size"] = config.embedding_size or config.hidden_size
        return hf

    def check_exportable(self, model: PtmModel) -> None:
        super().check_exportable(model)
        if model.backbone.has_pooler and "classification" not in heads_of_kind(model):
            raise UserError("ElectraModel has no pooler; only ElectraForSequenceClassification has one "
                            "(classifier.dense), for the classification head")

    def architecture(self, model: PtmModel) -> str:
        if "mlm" in heads_of_kind(model):
            self._check_lm_head_act(model.config.hidden_act, "this model")
        return super().architecture(model)

    # ---- heads and weights --------------------------------------------------------------------
    def heads_from_hf(self, hf: dict[str, Any], keys: set[str], architecture: str) -> dict[str, dict]:
        heads = super().heads_from_hf(hf, keys, architecture)
        if f"{self.rtd_modules[0]}.weight" in keys:
            heads["rtd"] = {"kind": "rtd"}
        return heads

    def head_params(self, model: PtmModel) -> list[Param]:
        params = super().head_params(model)
        kinds = heads_of_kind(model)
        if "rtd" in kinds:
            dense, prediction = self.rtd_modules
            params += [*linear(f"heads.{kinds['rtd']}.dense", dense),
                       *linear(f"heads.{kinds['rtd']}.classifier", prediction)]
        return params

    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("embeddings.", "embeddings_project.", "encoder."))

    def embedding_params(self, config) -> list[Param]:
        params = super().embedding_params(config)
        if config.embedding_size not in (None, config.hidden_size):
            params += linear("embeddings.project", "embeddings_project")
        return params

    # ---- the generator / discriminator pair ---------------------------------------------------
    def export_parts(self, pretrained) -> dict[str, Any]:
        """{sub-directory: Pretrained} for a model with its generator: the discriminator as it is
        and the generator as a model of its own; {} for a single network."""
        model = pretrained.model
        if "generator" not in model.helpers:
            return {}
        from ...checkpoint import Pretrained

        generator = model.helpers["generator"]
        discriminator = PtmModel("electra", model.backbone, dict(model.heads))
        alone = PtmModel("electra", generator.backbone, dict(generator.heads))
        return {PARTS[0]: Pretrained(discriminator, pretrained.tokenizer, pretrained.meta, pretrained.path),
                PARTS[1]: Pretrained(alone, pretrained.tokenizer, pretrained.meta, pretrained.path)}

    def describe_pair(self, parts: dict[str, PtmModel], where: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The config and the state dict of one ptmzoo ELECTRA model (discriminator + its generator
        helper, sharing embeddings) from the two HF networks opened on their own (``parts``:
        discriminator with ``rtd``, generator with ``mlm``)."""
        disc, gen = parts[PARTS[0]], parts[PARTS[1]]
        if "mlm" not in heads_of_kind(gen):
            raise UserError(f"{where}: generator/ holds no ElectraForMaskedLM head")
        dc, gc = disc.config, gen.config
        if (gc.embedding_size or gc.hidden_size) != (dc.embedding_size or dc.hidden_size):
            raise UserError(f"{where}: the generator's embedding_size differs from the discriminator's; ptmzoo's "
                            "ELECTRA shares one set of embeddings")
        config = dc.from_dict({**dc.to_dict(), "generator_size": gc.hidden_size / dc.hidden_size,
                               "generator_layers": gc.num_layers if gc.num_layers != dc.num_layers else None},
                              where=f"{where}: ")
        expected = config.generator_config()
        for field in ("hidden_size", "intermediate_size", "num_heads"):
            if getattr(expected, field) != getattr(gc, field):
                raise UserError(f"{where}: the generator's {field} ({getattr(gc, field)}) is not the discriminator's "
                                f"scaled by {config.generator_size:.3g} ({getattr(expected, field)}); ptmzoo scales "
                                "hidden size, feed-forward size and heads by one fraction")
        state = {key: tensor for key, tensor in disc.state_dict().items()}
        for key, tensor in gen.state_dict().items():
            shared = key.startswith("backbone.embeddings.") and not key.startswith("backbone.embeddings.project")
            if shared and not torch.equal(tensor, state[key]):
                raise UserError(f"{where}: generator and discriminator embeddings differ ({key.split('.', 1)[1]}); "
                                "ptmzoo's ELECTRA shares them")
            state[f"helpers.generator.{key}"] = tensor
        return config.to_dict(), state


def pair_dir(directory: str) -> bool:
    """Whether ``directory`` holds an exported ELECTRA pair (discriminator/ and generator/)."""
    return all(os.path.exists(os.path.join(directory, part, "config.json")) for part in PARTS)
