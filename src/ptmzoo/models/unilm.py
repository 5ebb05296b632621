"""UniLM: a unified pre-trained language model (Dong et al., 2019).

BERT's network, unchanged: what makes it a bidirectional encoder, a left-to-right or right-to-left
LM or a sequence-to-sequence model is only the self-attention mask (``nn.attention.unified_mask``),
chosen per batch by the ``unilm`` objective. The backbone therefore takes a full [B, L, L]
visibility matrix as ``attention_mask`` besides the usual [B, L] padding mask, and a KV cache for
generation: the source is encoded once (bidirectionally, it never sees the target) and each
target token attends over the cached keys -- exactly the seq2seq mask, one row at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..nn.attention import AttentionMask, padding_mask
from .base import BackboneOutput
from .bert import BertConfig, BertModel


@dataclass
class UnilmConfig(BertConfig):
    """UniLM-base is BERT-large-cased-initialised in the paper; the config is BERT's."""


class UnilmModel(BertModel):
    relative_positions_supported = False
    config_class = UnilmConfig
    supports_layerdrop = False  # its own layer loop
    supports_cache = True  # forward(..., cache=KVCache): the source once, then the target (generation.unilm)

    def attention(self, input_ids, attention_mask, cache) -> AttentionMask:
        if attention_mask is not None and attention_mask.dim() == 3:  # a unified mask from the collator
            return AttentionMask(mask=attention_mask.bool()[:, None])
        if cache is None:
            return padding_mask(attention_mask)
        first = cache.length == 0
        mask = cache.begin(input_ids.shape[1], attention_mask)
        if first:  # the source: bidirectional over its real tokens (cache.begin would make it causal)
            return AttentionMask(mask=cache.valid[:, None, None, : cache.num_keys])
        return mask  # target tokens: the source and the target so far

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, document_ids=None, cache=None) -> BackboneOutput:
        if document_ids is not None:
            return super().forward(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                                   document_ids)
        mask = self.attention(input_ids, attention_mask, cache)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        states = [x] if output_hidden_states else None
        for index, layer in enumerate(self.layers):
            x = layer(x, mask, cache, index)
            if states is not None:
                states.append(x)
        if cache is not None:
            cache.end()
        pooled = self.pooler(x) if self.pooler is not None else None
        return BackboneOutput(x, pooled, tuple(states) if states is not None else None)


