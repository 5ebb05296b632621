"""RoBERTa <-> Hugging Face ``roberta`` (RobertaModel, RobertaForMaskedLM,
RobertaForSequenceClassification) and ``xlm-roberta``, the same network with another vocabulary.

The layers have BERT's names. What differs:

* positions: HF's table has ``pad_token_id + 1`` rows before position 0 and its
  ``max_position_embeddings`` counts them (514 for 512 tokens); ptmzoo's counts tokens.
* the LM head is ``lm_head`` (dense, gelu, layer_norm, decoder tied to the embeddings, bias);
  its activation is always the exact gelu, whatever ``hidden_act`` says.
* the classifier is dense + tanh + out_proj on the first token: ptmzoo's pooler followed by the
  classification head. Its dense layer is the pooler (``classifier.dense``); HF also applies dropout
  before it, which changes nothing in evaluation.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import UserError
from ...models.model import PtmModel
from .base import heads_of_kind
from .bert import _BERT_DEFAULTS, EncoderAdapter


class RobertaAdapter(EncoderAdapter):
    family = "roberta"
    model_type = "roberta"
    base_prefix = "roberta."
    base_architecture = "RobertaModel"
    by_heads: ClassVar[dict[frozenset, str]] = {
        frozenset(): "RobertaModel", frozenset({"mlm"}): "RobertaForMaskedLM",
        frozenset({"classification"}): "RobertaForSequenceClassification"}
    hf_defaults: ClassVar[dict[str, Any]] = {**_BERT_DEFAULTS, "vocab_size": 50265, "pad_token_id": 1}
    required: ClassVar[dict[str, Any]] = {"embedding_size": None, "share_layers": "none",
                                          "positions_after_padding": True}
    classifier_pooler = "classifier.dense"
    mlm_modules = ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias", "lm_head.decoder")
    sentence_heads: ClassVar[dict[str, str]] = {}
    classifier = "classifier.out_proj"

    def _check_lm_head_act(self, hidden_act: str, where: str) -> None:
        if hidden_act != "gelu":
            raise UserError(f"{where}: RoBERTa's LM head uses gelu but ptmzoo's uses hidden_act ({hidden_act!r}); "
                            "this model's MLM head cannot be converted exactly")

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        config = super().config_from_hf(hf, keys, where)
        if f"{self.mlm_modules[0]}.weight" in keys:
            self._check_lm_head_act(config["hidden_act"], where)
        config["positions_after_padding"] = True
        config["max_position_embeddings"] -= config["pad_token_id"] + 1  # rows before position 0
        if config["max_position_embeddings"] < 1:
            raise UserError(f"{where}: max_position_embeddings leaves no position after the padding index "
                            f"{config['pad_token_id']}")
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = super().config_to_hf(config)
        hf["max_position_embeddings"] = config.max_position_embeddings + config.position_offset
        return hf

    def architecture(self, model: PtmModel) -> str:
        if "mlm" in heads_of_kind(model):
            self._check_lm_head_act(model.config.hidden_act, "this model")
        return super().architecture(model)


class XLMRobertaAdapter(RobertaAdapter):
    """XLM-R is RoBERTa with a SentencePiece vocabulary of 250k; it opens as a ptmzoo roberta
    model, which is written back as ``roberta``."""

    model_type = "xlm-roberta"
    base_architecture = "XLMRobertaModel"
    by_heads: ClassVar[dict[frozenset, str]] = {kinds: "XLM" + name for kinds, name in RobertaAdapter.by_heads.items()}
    hf_defaults: ClassVar[dict[str, Any]] = {**RobertaAdapter.hf_defaults, "vocab_size": 30522}
