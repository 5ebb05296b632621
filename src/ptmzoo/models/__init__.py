"""Model families: one backbone file each, registered by family name."""

from __future__ import annotations

from ..errors import UserError
from .base import Backbone, BackboneOutput, ModelOutput
from .bert import BertConfig, BertModel
from .gpt2 import GPT2Config, GPT2Model

FAMILIES: dict[str, type[Backbone]] = {
    "bert": BertModel,
    "gpt2": GPT2Model,
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
    "Backbone",
    "BackboneOutput",
    "ModelOutput",
    "BertConfig",
    "BertModel",
    "GPT2Config",
    "GPT2Model",
    "FAMILIES",
    "backbone_class",
    "build_backbone",
]
