"""The catalog of the zoo: one spec per family (in the manner of torchtitan's ``ModelSpec``) and
the one function that assembles a model from it.

A ``FamilySpec`` names everything a family is made of: its backbone (and so its config class),
the wrapper around backbone and heads (``PtmModel``; ``Seq2SeqModel`` for encoder-decoders), its
Hugging Face adapters (the first one exports; all import), the function that generates text with
it, and its presets. The head and helper kinds that ``ptmzoo.json`` names are resolved here too.
Adding a family is registering its spec in ``FAMILIES``; the contract tests
(``tests/models/test_contract.py``) then run on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import UserError
from .finetune.strategies import LayerMixHead
from .generation.decoding import generate as generate_decoder
from .generation.seq2seq import generate_seq2seq
from .generation.unilm import generate_unilm
from .interop.hf import albert as hf_albert
from .interop.hf import bart as hf_bart
from .interop.hf import bert as hf_bert
from .interop.hf import distilbert as hf_distilbert
from .interop.hf import electra as hf_electra
from .interop.hf import gpt2 as hf_gpt2
from .interop.hf import openai_gpt as hf_openai_gpt
from .interop.hf import roberta as hf_roberta
from .interop.hf import t5 as hf_t5
from .interop.hf import xlm as hf_xlm
from .interop.hf import xlnet as hf_xlnet
from .interop.hf.base import StateDictAdapter
from .models.awd_lstm import AwdLstmModel
from .models.bart import BartModel
from .models.base import Backbone
from .models.bert import AlbertModel, BertModel, DistilBertModel, RobertaModel
from .models.bilstm import BiLSTMModel
from .models.cove import CoveModel
from .models.electra import ElectraBackbone
from .models.elmo import ElmoModel
from .models.ernie import ErnieModel
from .models.gpt1 import GPT1Model
from .models.gpt2 import GPT2Model
from .models.model import Head, PtmModel
from .models.seq2seq import Seq2SeqLMHead, Seq2SeqModel
from .models.t5 import T5Model
from .models.transfo_xl import MemoryModel, TransfoXLModel
from .models.transformer import TransformerSeq2SeqModel
from .models.unilm import UnilmModel
from .models.xlm import XLMModel
from .models.xlnet import XLNetModel
from .objectives import OBJECTIVES
from .objectives.rtd import ElectraGenerator
from .presets import PRESETS, Preset
from .tasks.classification import ClassificationHead, MultiLabelHead, RegressionHead
from .tasks.gpt_input import AuxiliaryLMHead
from .tasks.multiple_choice import MultipleChoiceHead
from .tasks.qa import SpanHead
from .tasks.tagging import TaggingHead


@dataclass(frozen=True)
class FamilySpec:
    name: str
    backbone: type[Backbone]
    wrapper: type[PtmModel] = PtmModel
    hf_adapters: tuple[type[StateDictAdapter], ...] = ()  # the first exports; every one imports its model_type
    generate: Callable[..., Any] | None = None  # generation.decoding.generate and its kin
    description: str = ""

    @property
    def config_class(self) -> type:
        return self.backbone.config_class

    @property
    def streams_text(self) -> bool:
        """Its ``generate`` hands out the text as it is generated (``on_text``): the decoders'."""
        return self.generate is generate_decoder

    @property
    def presets(self) -> list[Preset]:
        return [preset for preset in PRESETS.values() if preset.family == self.name]


FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec("bert", BertModel, hf_adapters=(hf_bert.BertAdapter,), description="BERT encoder"),
    FamilySpec("roberta", RobertaModel, hf_adapters=(hf_roberta.RobertaAdapter, hf_roberta.XLMRobertaAdapter),
               description="RoBERTa / XLM-R encoder"),
    FamilySpec("albert", AlbertModel, hf_adapters=(hf_albert.AlbertAdapter,), description="ALBERT encoder"),
    FamilySpec("distilbert", DistilBertModel, hf_adapters=(hf_distilbert.DistilBertAdapter,),
               description="DistilBERT encoder"),
    FamilySpec("electra", ElectraBackbone, hf_adapters=(hf_electra.ElectraAdapter,),
               description="ELECTRA discriminator (+ generator while pre-training)"),
    FamilySpec("xlm", XLMModel, hf_adapters=(hf_xlm.XLMAdapter,), description="XLM cross-lingual encoder"),
    FamilySpec("ernie", ErnieModel, description="ERNIE (Tsinghua) knowledge-enhanced encoder"),
    FamilySpec("gpt1", GPT1Model, hf_adapters=(hf_openai_gpt.OpenAIGPTAdapter,), generate=generate_decoder,
               description="GPT-1 decoder"),
    FamilySpec("gpt2", GPT2Model, hf_adapters=(hf_gpt2.GPT2Adapter,), generate=generate_decoder,
               description="GPT-2 / GPT-3-style decoder"),
    FamilySpec("t5", T5Model, Seq2SeqModel, hf_adapters=(hf_t5.T5Adapter,), generate=generate_seq2seq,
               description="T5 encoder-decoder"),
    FamilySpec("bart", BartModel, Seq2SeqModel, hf_adapters=(hf_bart.BartAdapter,), generate=generate_seq2seq,
               description="BART encoder-decoder"),
    FamilySpec("transformer", TransformerSeq2SeqModel, Seq2SeqModel, generate=generate_seq2seq,
               description="the original Transformer encoder-decoder"),
    FamilySpec("unilm", UnilmModel, generate=generate_unilm, description="UniLM unified encoder"),
    FamilySpec("transfo_xl", TransfoXLModel, MemoryModel, generate=generate_decoder,
               description="Transformer-XL decoder with segment-level memory"),
    FamilySpec("xlnet", XLNetModel, MemoryModel, hf_adapters=(hf_xlnet.XLNetAdapter,),
               description="XLNet two-stream permutation LM"),
    FamilySpec("elmo", ElmoModel, description="ELMo: character CNN + biLSTM language model"),
    FamilySpec("awd_lstm", AwdLstmModel, generate=generate_decoder, description="AWD-LSTM language model (ULMFiT)"),
    FamilySpec("cove", CoveModel, Seq2SeqModel, generate=generate_seq2seq,
               description="CoVe: attentional LSTM translation model (its encoder gives the vectors)"),
    FamilySpec("bilstm", BiLSTMModel, description="BiLSTM sentence encoder (Distilled BiLSTM student)"),
)}

# Heads and helper networks by the kind that ptmzoo.json records: every objective's head, and the
# heads of the fine-tuning tasks and strategies.
HEADS: dict[str, type[Head]] = {cls.kind: cls for cls in (
    *(objective.head for objective in OBJECTIVES.values()), Seq2SeqLMHead,
    ClassificationHead, RegressionHead, MultiLabelHead, MultipleChoiceHead, TaggingHead, SpanHead, AuxiliaryLMHead,
    LayerMixHead)}
HELPERS: dict[str, type[torch.nn.Module]] = {cls.kind: cls for cls in (ElectraGenerator,)}


def family(name: str) -> FamilySpec:
    if name not in FAMILIES:
        raise UserError(f"unknown model family '{name}' (known: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def head_class(kind: str) -> type[Head]:
    if kind not in HEADS:
        raise UserError(f"unknown head kind {kind!r} (known: {', '.join(sorted(HEADS))}); the checkpoint may come "
                        "from a newer ptmzoo")
    return HEADS[kind]


def helper_class(kind: str) -> type[torch.nn.Module]:
    if kind not in HELPERS:
        raise UserError(f"unknown helper network {kind!r} (known: {', '.join(sorted(HELPERS))})")
    return HELPERS[kind]


def build_backbone(family_name: str, config: dict[str, Any] | None = None) -> Backbone:
    """A backbone of ``family_name`` from a config dict (checked against the family's config class)."""
    cls = family(family_name).backbone
    return cls(cls.config_class.from_dict(config or {}, where="model."))


def build_model(family_name: str, config: dict[str, Any] | None = None, *, backbone: Backbone | None = None,
                heads: dict[str, dict[str, Any]] | None = None,
                helpers: dict[str, dict[str, Any]] | None = None) -> PtmModel:
    """The one place a model is assembled: the family's wrapper around a backbone (built from
    ``config``, or given), then the helper networks and heads of their specs ({name: {kind,
    options}}, as ``ptmzoo.json`` records them)."""
    spec = family(family_name)
    model = spec.wrapper(family_name, backbone if backbone is not None else build_backbone(family_name, config))
    for name, entry in (helpers or {}).items():
        model.add_helper(name, helper_class(entry["kind"]), **(entry.get("options") or {}))
    for name, entry in (heads or {}).items():
        model.add_head(name, head_class(entry["kind"]).from_spec(model.backbone, entry.get("options") or {},
                                                                  head_class))
    return model


def count_parameters(preset: Preset, vocab_size: int | None = None) -> int:
    """Parameters of the backbone plus the heads and helper networks of the preset's objectives
    (tied weights counted once)."""
    config = dict(preset.model)
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    with torch.device("meta"):
        model = build_model(preset.family, config)
        for name in preset.objectives:
            objective = OBJECTIVES[name]
            for helper_name, helper in objective.helpers.items():
                model.add_helper(helper_name, helper)
            model.add_head(name, objective.head)
    return sum(p.numel() for p in model.parameters())


def generate(model, inputs, tokenizer=None, **options):
    """Generate with any model that can (``FamilySpec.generate``): decoders continue prompts,
    encoder-decoders and UniLM map sources to targets. ``model``: what ``ptmzoo.load`` returns, or
    a ``PtmModel``."""
    network = model if isinstance(model, PtmModel) else model.model
    spec = family(network.family)
    if spec.generate is None:
        raise UserError(f"a {network.family} model cannot generate text; use a decoder (gpt2), an encoder-decoder "
                        "(t5, bart) or unilm")
    return spec.generate(model, inputs, tokenizer, **options)
