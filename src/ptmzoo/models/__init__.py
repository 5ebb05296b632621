"""Model families: one backbone file each. The catalog of families (``ptmzoo.catalog``) says
which backbone, wrapper, adapters and presets each family name stands for."""

from .bart import BartConfig, BartModel
from .base import Backbone, BackboneOutput, ModelOutput
from .bert import AlbertModel, BertConfig, BertModel, DistilBertModel, RobertaModel
from .gpt1 import GPT1Config, GPT1Model
from .gpt2 import GPT2Config, GPT2Model
from .model import Head, PtmModel
from .t5 import T5Config, T5Model

__all__ = [
    "AlbertModel",
    "Backbone",
    "BackboneOutput",
    "BartConfig",
    "BartModel",
    "BertConfig",
    "BertModel",
    "DistilBertModel",
    "GPT1Config",
    "GPT1Model",
    "GPT2Config",
    "GPT2Model",
    "Head",
    "ModelOutput",
    "PtmModel",
    "RobertaModel",
    "T5Config",
    "T5Model",
]
