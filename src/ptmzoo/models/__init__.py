"""Model families: one backbone file each, registered by family name."""

from __future__ import annotations

from ..errors import UserError
from .bart import BartConfig, BartModel
from .base import Backbone, BackboneOutput, ModelOutput
from .bert import AlbertModel, BertConfig, BertModel, DistilBertModel, RobertaModel
from .electra import ElectraBackbone
from .ernie import ErnieModel
from .gpt1 import GPT1Config, GPT1Model
from .gpt2 import GPT2Config, GPT2Model
from .t5 import T5Config, T5Model
from .transformer import TransformerSeq2SeqModel
from .unilm import UnilmModel
from .xlm import XLMModel

FAMILIES: dict[str, type[Backbone]] = {
    "bert": BertModel,
    "roberta": RobertaModel,
    "albert": AlbertModel,
    "distilbert": DistilBertModel,
    "electra": ElectraBackbone,
    "xlm": XLMModel,
    "ernie": ErnieModel,
    "gpt1": GPT1Model,
    "gpt2": GPT2Model,
    "t5": T5Model,
    "bart": BartModel,
    "transformer": TransformerSeq2SeqModel,
    "unilm": UnilmModel,
}


def backbone_class(family: str) -> type[Backbone]:
    try:
        return FAMILIES[family]
    except KeyError:
        raise UserError(f"unknown model family '{family}' (known: {', '.join(FAMILIES)})") from None


def build_backbone(family: str, config: dict) -> Backbone:
    cls = backbone_class(family)
    return cls(cls.config_class.from_dict(config, where="model."))


__all__ = [
    "FAMILIES",
    "Backbone",
    "BackboneOutput",
    "BartConfig",
    "BartModel",
    "BertConfig",
    "BertModel",
    "GPT1Config",
    "GPT1Model",
    "GPT2Config",
    "GPT2Model",
    "ModelOutput",
    "T5Config",
    "T5Model",
    "backbone_class",
    "build_backbone",
]
