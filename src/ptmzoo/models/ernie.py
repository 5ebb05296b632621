"""ERNIE from Tsinghua (Zhang et al., 2019, "ERNIE: Enhanced Language Representation with
Informative Entities"): a BERT encoder whose upper layers also read the knowledge-graph embeddings
of the entities mentioned in the text.

* T-Encoder: the bottom ``num_layers - knowledge_layers`` layers are BERT layers over the tokens
  (``models.bert``, unchanged).
* K-Encoder: the top ``knowledge_layers`` layers are *aggregators*. Entities live at token
  positions: the (TransE) embedding of an entity sits at the first token of its mention
  (``entity_ids`` [B, L], 0 = no entity), a zero vector elsewhere. Aggregator i maps token states
  ``w`` and entity states ``e`` to

      w~ = LN(w + MH-ATT(w))                      self-attention over the tokens
      e~ = LN(e + MH-ATT_e(e)) · a                self-attention among the aligned entities;
                                                  a = 1 where an entity is aligned, else 0
      h  = act(W_t w~ + W_e e~ + b)               information fusion (just act(W_t w~ + b) where
                                                  nothing is aligned)
      w' = LN(w~ + W'_t h + b'_t)
      e' = LN(e~ + W'_e h + b'_e)

  The paper writes the last two as σ(W'_t h + b'_t) and σ(W'_e h + b'_e); the authors' code
  (thunlp/ERNIE) computes them as above -- a projection, dropout, the residual and LayerNorm, i.e.
  BERT's feed-forward block with the fusion layer as its inner layer -- and so does this file.
  Hence an aggregator with nothing aligned is exactly a BERT layer (``W_t``, ``W'_t`` are the
  feed-forward weights), and the model runs on plain text, e.g. when fine-tuning. The last
  aggregator has no ``W'_e``: nothing reads its entity output (the authors' code leaves those
  weights out of the optimizer for the same reason). Entity self-attention has ``entity_heads``
  heads of size ``entity_size`` (4 and 100 in the paper) and sees only the aligned entities of
  the same (packed) document.

The entity table is a frozen embedding (``train_entities`` makes it trainable) filled from the
vector file the shards were prepared with (``prepare --entities``); row 0 is "no entity".
``num_entities`` and ``entity_size`` follow that file (``size_entity_table``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..nn import (
    Attention,
    AttentionMask,
    document_mask,
    init_transformer_weights,
    padding_mask,
)
from .base import TOKEN_INPUTS, BackboneOutput
from .bert import BertConfig, BertLayer, BertModel


@dataclass
class ErnieConfig(BertConfig):
    num_layers: int = 12  # all layers: T-Encoder (N) + K-Encoder (M)
    knowledge_layers: int = 6  # M: the top layers are aggregators
    num_entities: int = 1  # rows of the entity table: row 0 = no entity, then one per entity
    entity_size: int = 100  # entity embedding size (the TransE vectors' dimension)
    entity_heads: int = 4
    train_entities: bool = False  # False: the entity embeddings stay as the vector file gave them

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.knowledge_layers < self.num_layers:
            raise UserError(f"model.knowledge_layers ({self.knowledge_layers}) must be at least 1 and less than "
                            f"model.num_layers ({self.num_layers}), which counts both encoders")
        if self.num_entities < 1 or self.entity_size < 1 or self.entity_heads < 1:
            raise UserError("model.num_entities, model.entity_size and model.entity_heads must be at least 1")
        if self.entity_size % self.entity_heads:
            raise UserError(f"model.entity_size ({self.entity_size}, the entity vectors' dimension) must be "
                            f"divisible by model.entity_heads ({self.entity_heads}); change model.entity_heads")


def entity_attention_mask(aligned: torch.Tensor, token_mask: AttentionMask) -> AttentionMask:
    """Entity self-attention sees the aligned positions ([B, L] bool) that the token attention
    sees (same packed document, no padding). A query with no entity to see (its sequence or
    document has none) sees every key instead of none, which would give NaN; its output is zeroed."""
    keys = aligned[:, None, None, :]
    if token_mask.mask is not None:
        keys = keys & token_mask.mask
    return AttentionMask(mask=keys | ~keys.any(dim=-1, keepdim=True))


class Aggregator(BertLayer):
    """A BERT layer (token attention, feed-forward block) plus entity attention and the fusion
    weights; see the module docstring."""

    def __init__(self, config: ErnieConfig, entity_output: bool = True):
        super().__init__(config)
        size = config.entity_size
        self.entity_attention = Attention(size, config.entity_heads, config.attention_dropout)
        self.entity_attention_norm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.fuse_entity = nn.Linear(size, config.intermediate_size, bias=False)  # W_e (W_t, b: ffn.up)
        self.entity_out = nn.Linear(config.intermediate_size, size) if entity_output else None  # W'_e
        self.entity_norm = nn.LayerNorm(size, eps=config.layer_norm_eps) if entity_output else None

    def forward(self, x, mask, entities=None, entity_mask=None, aligned=None):
        """Token states, and entity states [B, L, entity_size] (None: no entities, a BERT layer)."""
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        inner = self.ffn.up(x)
        if entities is not None:
            attended = self.entity_attention(entities, entity_mask)
            entities = self.entity_attention_norm(entities + self.dropout(attended)) * aligned
            inner = inner + self.fuse_entity(entities)
        fused = self.ffn.act(inner)
        x = self.ffn_norm(x + self.dropout(self.ffn.down(fused)))
        if entities is None or self.entity_out is None:
            return x, None
        return x, self.entity_norm(entities + self.dropout(self.entity_out(fused)))


class ErnieModel(BertModel):
    relative_positions_supported = False
    config_class = ErnieConfig
    supports_layerdrop = False  # its own layer loop
    inputs = (*TOKEN_INPUTS, "entity_ids")

    def __init__(self, config: ErnieConfig):
        # BERT's embeddings, its N T-Encoder layers and pooler; then the entity table and aggregators
        super().__init__(dataclasses.replace(config, num_layers=config.num_layers - config.knowledge_layers))
        self.config = config
        self.entity_embeddings = nn.Embedding(config.num_entities, config.entity_size, padding_idx=0)
        # modules registered in the order of computation (layer-wise learning rates follow it)
        self.layers = self._modules.pop("layers")
        last = config.knowledge_layers - 1
        self.aggregators = nn.ModuleList(Aggregator(config, entity_output=i < last) for i in range(last + 1))
        if self.pooler is not None:
            self.pooler = self._modules.pop("pooler")
        for module in (self.entity_embeddings, self.aggregators):
            init_transformer_weights(module, config.initializer_range)
        self.entity_embeddings.weight.requires_grad_(config.train_entities)

    @torch.no_grad()
    def set_entity_vectors(self, vectors: np.ndarray | torch.Tensor) -> None:
        """Fill the entity table: row i is entity i (``vectors[i - 1]``), row 0 stays zero."""
        table = self.entity_embeddings.weight
        vectors = torch.as_tensor(vectors, dtype=table.dtype)
        if tuple(vectors.shape) != (table.shape[0] - 1, table.shape[1]):
            raise UserError(f"{len(vectors)} entity vectors of size {vectors.shape[-1]} do not fit the model's entity "
                            f"table ({table.shape[0] - 1} entities of size {table.shape[1]})")
        table[0].zero_()
        table[1:].copy_(vectors)

    @classmethod
    def config_from_corpus(cls, config, tokenizer, corpus, explicit):
        """BERT's, and the entity table sized by the shards' entity vectors (``prepare --entities``)."""
        config = super().config_from_corpus(config, tokenizer, corpus, explicit)
        table = corpus.entities()
        if table is None:
            return config
        names, vectors = table
        fitted = {"num_entities": len(names) + 1, "entity_size": int(vectors.shape[1])}
        for key, value in fitted.items():
            if key in explicit and explicit[key] != value:
                raise UserError(f"model.{key}={explicit[key]} does not fit the entity vectors of {corpus.directory} "
                                f"({len(names)} entities of size {vectors.shape[1]}); leave model.{key} out")
        return {**config, **fitted}

    def load_corpus_data(self, corpus) -> dict:
        """The entity table from the shards' vectors; entity id i is ``entities[i - 1]``."""
        table = corpus.entities()
        if table is None:
            return {"entities": None}
        names, vectors = table
        self.set_entity_vectors(vectors)
        return {"entities": names}

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                document_ids=None, entity_ids=None, output_hidden_states=False) -> BackboneOutput:
        """BERT's inputs, and ``entity_ids`` [B, L]: the entity whose mention begins at each token
        (0: none); without them the K-Encoder runs as BERT layers."""
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = document_mask(document_ids, attention_mask) if document_ids is not None else padding_mask(attention_mask)
        if entity_ids is None and self.training and torch.distributed.is_initialized():
            entity_ids = torch.zeros_like(input_ids)  # DDP: every weight must take part in each step
        entities = entity_mask = aligned = None
        if entity_ids is not None:
            is_aligned = entity_ids > 0
            entities = self.entity_embeddings(entity_ids)
            entity_mask = entity_attention_mask(is_aligned, mask)
            aligned = is_aligned[..., None].to(entities.dtype)
        states = [x] if output_hidden_states else None
        for layer in [*self.layers, *self.aggregators]:
            if isinstance(layer, Aggregator):
                x, entities = layer(x, mask, entities, entity_mask, aligned)
            else:
                x = layer(x, mask)
            if states is not None:
                states.append(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BackboneOutput(x, pooled, tuple(states) if states is not None else None)

