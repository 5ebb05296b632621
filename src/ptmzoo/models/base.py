"""What every backbone returns, and the small interface the heads rely on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import Config
from ..errors import UserError


@dataclass
class TransformerConfig(Config):
    """Fields every Transformer family has; family configs add theirs and change defaults."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        if self.hidden_size % self.num_heads:
            raise UserError(f"model.hidden_size ({self.hidden_size}) must be divisible by "
                            f"model.num_heads ({self.num_heads})")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"model.{name} must be in [0, 1)")


@dataclass
class BackboneOutput:
    last_hidden_state: torch.Tensor  # [batch, seq, hidden]
    pooler_output: torch.Tensor | None = None  # [batch, hidden], encoders with a pooler
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + every layer, on request


@dataclass
class ModelOutput(BackboneOutput):
    logits: torch.Tensor | None = None  # the primary (first) head's logits
    head_logits: dict[str, torch.Tensor] = field(default_factory=dict)  # every head, by name
    # Training (targets given): each head's summed loss, and the sum of the heads' mean losses.
    loss_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    loss: torch.Tensor | None = None


# tokenizer role -> the config field naming its id; a family has those of the fields its config has
SPECIAL_TOKEN_FIELDS = {"pad": "pad_token_id", "bos": "bos_token_id", "eos": "eos_token_id"}


def special_token_ids(config_class: type, tokenizer) -> dict[str, int]:
    """The config fields of ``config_class`` that name a special token (pad, bos, eos), set to the
    tokenizer's ids of those tokens."""
    fields = config_class.field_types()
    ids = {}
    for role, name in SPECIAL_TOKEN_FIELDS.items():
        if name in fields and tokenizer.role_id(role) is not None:
            ids[name] = tokenizer.role_id(role)
    return ids


# What a token-level backbone reads from a batch. ``PtmModel`` and the Trainer pass exactly the
# entries a backbone declares in ``inputs``; a family that reads more (ERNIE's entity ids) or
# other things (character ids, pixels, memories) declares its own tuple.
TOKEN_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "document_ids")


class Backbone(nn.Module):
    """Base class: token ids (and masks, segments) in, hidden states out. Never a loss.

    What a backbone reads and can do is declared here, with defaults, and never sniffed:

    * ``inputs``: the batch entries ``forward`` takes as keywords; the first is the primary one
      (its first dimension is the batch, its second the sequence);
    * ``causal``: attends left to right (decoders); ``is_encoder_decoder``: ``encode`` + ``decode``;
    * ``supports_cache``: ``forward(..., cache=KVCache)`` continues cached tokens (generation);
    * ``max_length``: the longest input (None: no position table, e.g. T5's relative buckets);
    * ``ties_output_embeddings`` / ``mlm_head_transform``: how LM heads are built on it.
    """

    config_class: ClassVar[type]
    inputs: ClassVar[tuple[str, ...]] = TOKEN_INPUTS
    input_rank: ClassVar[int] = 2  # dimensions of one batch of the primary input: [batch, length]
    causal: bool = False
    is_encoder_decoder: ClassVar[bool] = False
    supports_cache: ClassVar[bool] = False

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def input_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def has_pooler(self) -> bool:
        return False

    @property
    def max_length(self) -> int | None:
        return self.config.max_position_embeddings

    @property
    def ties_output_embeddings(self) -> bool:
        """Whether LM heads share the input embedding matrix (GPT-2 and T5 can untie it)."""
        return True

    @property
    def mlm_head_transform(self) -> bool:
        """Whether the MLM head has BERT's dense + LayerNorm transform (XLM's has none)."""
        return True

    # ---- what a pre-training corpus gives the model ------------------------------------------
    # (token ids of special roles, ERNIE's entity table, XLM's language ids)
    @classmethod
    def config_from_corpus(cls, config: dict[str, Any], tokenizer, corpus, explicit: dict[str, Any]) -> dict[str, Any]:
        """``config`` (a preset's model dict with the vocabulary size) completed from the corpus:
        the tokenizer's special ids for the fields the family has, unless already set. ``explicit``
        (the recipe's own model settings) is what the user asked for: families that size a
        table from the corpus (ERNIE) refuse a contradiction."""
        return {**special_token_ids(cls.config_class, tokenizer), **config}

    def load_corpus_data(self, corpus) -> dict[str, Any]:
        """Fill weights that come from the corpus (ERNIE: its entity vectors) after construction;
        return what ``ptmzoo.json`` records of them, which continued pre-training must match."""
        return {}

    def corpus_segment_ids(self, corpus_meta: dict[str, Any]) -> tuple[int, ...] | None:
        """Segment ids a corpus gives its tokens (XLM: the ids of its languages); None: none."""
        return None
