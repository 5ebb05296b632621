"""XLNet (Yang et al., 2019): the Transformer-XL backbone trained by permutation language modelling.

The network is ``transfo_xl``'s relative attention and memory, bidirectional, with three changes:

* *Two streams.* The content stream h is Transformer-XL's (a token's state sees its own
  content). The query stream g starts from one learned vector (``mask_emb``) at every position to
  predict and runs through the same layers, attending to the content stream: it knows the
  position it predicts (through the relative terms) but not the token there. Which keys each
  query may see is the permutation mask (``perm_mask`` [B, L, L], 1 = query i may not see key j,
  the factorisation order of ``objectives.plm``); the content stream may also see itself. With
  ``target_mapping`` [B, P, L] (row p: the one-hot position of prediction p) the query stream runs
  only for the P predicted positions and the output is its state [B, P, hidden]; without it, the
  output is the content stream [B, L, hidden].
* *Relative segments.* A term (q_i + b_s) . s_ij joins the scores, with s_ij one of two learned
  vectors per head for "same segment" and "different segment" (``token_type_ids``); the memory
  counts as segment 0. No absolute segment embedding: any number of segments works.
* Every layer has its own u, v (``untie_r``), the feed-forward network uses GELU, embeddings are
  not scaled and the vocabulary is a single softmax.

The memory works as in Transformer-XL (``mems`` in, next ``mems`` out; the memory is visible to
every query); ``reuse_len`` caches only the first tokens of a segment, as XLNet's pre-training did.
Inputs are laid out as XLNet's: ``A <sep> B <sep> <cls>`` (the ``xlnet`` tokenizer style), and the
sequence summary of the fine-tuning heads is the last token, ``<cls>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import UserError
from ..nn import AttentionMask
from ..nn.attention import ScoreBias
from .transfo_xl import (
    CONFIG_MEM_LEN,
    Memory,
    MemoryOutput,
    RelativeBiases,
    RelativeLayer,
    TransfoXLConfig,
    TransfoXLModel,
    next_memory,
)


@dataclass
class XLNetConfig(TransfoXLConfig):
    vocab_size: int = 32000
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    mem_len: int | None = None  # as the released configs: keep every state when a memory is asked for
    untie_r: bool = True
    scale_embeddings: bool = False
    attn_type: Literal["bi", "uni"] = "bi"  # uni: also left to right (XLNet's ablation)
    pad_token_id: int = 5
    bos_token_id: int = 1
    eos_token_id: int = 2

    def validate(self) -> None:
        super().validate()
        if self.cutoffs or self.div_val != 1 or (self.embedding_size not in (None, self.hidden_size)):
            raise UserError("XLNet has one softmax over its vocabulary: model.cutoffs must be empty, model.div_val 1 "
                            "and model.embedding_size the hidden size")


class SegmentBiases(RelativeBiases):
    """u and v, and XLNet's segment terms: the bias b_s and the two vectors s (same, different)."""

    def __init__(self, num_heads: int, head_dim: int, std: float):
        super().__init__(num_heads, head_dim, std)
        self.segment = nn.Parameter(torch.empty(num_heads, head_dim).normal_(std=std))
        self.segment_embed = nn.Parameter(torch.empty(2, num_heads, head_dim).normal_(std=std))


class XLNetLayer(RelativeLayer):
    def relative_terms(self, positions: torch.Tensor, keys: int, different: torch.Tensor | None = None) -> ScoreBias:
        """Transformer-XL's (b) + (d), plus the segment term (q_i + b_s) . s_ij where ``different``
        [B, Lq, keys] says whether token i and key j are in different segments."""
        position_terms = super().relative_terms(positions, keys)
        if different is None:
            return position_terms
        scale, biases = self.attention.score_scale, self.biases

        def bias(q: torch.Tensor) -> torch.Tensor:
            per_segment = torch.einsum("bhid,shd->bhis", q + biases.segment[None, :, None, :].to(q.dtype),
                                       biases.segment_embed.to(q.dtype))  # [B, H, Lq, 2]
            segment = torch.where(different[:, None], per_segment[..., 1:], per_segment[..., :1])
            return position_terms(q) + segment * scale

        return bias

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, content_mask: AttentionMask, query_mask: AttentionMask,
                positions: torch.Tensor, different: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                target_mapping: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        source = h if memory is None else torch.cat([memory.detach(), h], dim=1)
        kv = self.attention.project_kv(source)  # both streams attend to the content stream
        bias = self.relative_terms(positions, source.shape[1], different)
        h_next = self.feed_forward(self.attend(h, content_mask, bias, kv=kv))
        if g is None:
            return h_next, None
        # the query stream at every position of the sequence, then back to the P predictions
        # (exact: the projections have no bias, so they commute with the one-hot mapping)
        queries = g if target_mapping is None else torch.einsum("bpl,bph->blh", target_mapping, g)
        read = self.attention(queries, query_mask, kv=kv, score_bias=bias, content_bias=self.biases.content)
        if target_mapping is not None:
            read = torch.einsum("bpl,blh->bph", target_mapping, read)
        return h_next, self.feed_forward(self.attention_norm(g + self.dropout(read)))


class XLNetModel(TransfoXLModel):
    config_class = XLNetConfig
    inputs = ("input_ids", "attention_mask", "token_type_ids", "mems", "perm_mask", "target_mapping")
    causal = False
    pools_last = True  # the summary token <cls> ends the input
    biases_class = SegmentBiases
    layer_class = XLNetLayer

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.mask_emb = nn.Parameter(torch.empty(config.hidden_size).normal_(std=config.initializer_range))

    def masks(self, attention_mask: torch.Tensor | None, perm_mask: torch.Tensor | None, length: int, memory: int,
              device) -> tuple[AttentionMask, AttentionMask]:
        """(content mask, query mask) over [memory; segment]: a key is hidden from query i when it
        is padding or ``perm_mask[i, j]`` is set (or lies ahead, with ``attn_type: uni``); the
        memory is always visible; the content stream also sees its own token."""
        blocked = None
        if attention_mask is not None:
            keep = self.key_padding(attention_mask, memory, length)
            if keep is not None:
                blocked = ~keep[:, None, :].expand(-1, length, -1)
        if perm_mask is not None:
            order = torch.cat([perm_mask.new_zeros(perm_mask.shape[0], length, memory), perm_mask], dim=2) > 0
            blocked = order if blocked is None else blocked | order
        if self.config.attn_type == "uni":
            ahead = torch.ones(length, memory + length, dtype=torch.bool, device=device).triu(memory + 1)[None]
            blocked = ahead if blocked is None else blocked | ahead
        if blocked is None:
            return AttentionMask(), AttentionMask()
        itself = torch.zeros(length, memory + length, dtype=torch.bool, device=device)
        itself[torch.arange(length), memory + torch.arange(length)] = True
        return AttentionMask(mask=(~blocked | itself)[:, None]), AttentionMask(mask=~blocked[:, None])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, mems: Memory | None = None,
                perm_mask: torch.Tensor | None = None, target_mapping: torch.Tensor | None = None,
                output_hidden_states: bool = False, mem_len: int | None | str = CONFIG_MEM_LEN) -> MemoryOutput:
        """``perm_mask`` [B, L, L] (1: i may not see j), ``target_mapping`` [B, P, L] (one-hot
        positions to predict), ``mems`` (the previous segment's); hidden states are the content
        stream's."""
        batch, length = input_ids.shape
        memory = self.memory_length(mems)
        h = self.dropout(self.embeddings(input_ids))
        g = None
        if target_mapping is not None:
            target_mapping = target_mapping.to(h.dtype)
            g = self.dropout(self.mask_emb.to(h.dtype).expand(batch, target_mapping.shape[1], -1))
        positions = self.relative_positions(length, memory + length, h.device)
        content_mask, query_mask = self.masks(attention_mask, perm_mask, length, memory, h.device)
        different = None
        if token_type_ids is not None:  # the memory is segment 0
            keys = token_type_ids if not memory else torch.cat([token_type_ids.new_zeros(batch, memory),
                                                                token_type_ids], dim=1)
            different = token_type_ids[:, :, None] != keys[:, None, :]
        layer_inputs, states = [], [h] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            layer_inputs.append(h)
            h, g = layer(h, g, content_mask, query_mask, positions, different, None if mems is None else mems[i],
                         target_mapping)
            if states is not None:
                states.append(h)
        out = self.dropout(g if g is not None else h)
        keep = self.config.mem_len if mem_len == CONFIG_MEM_LEN else mem_len
        return MemoryOutput(out, None, tuple(states) if states is not None else None,
                            next_memory(mems, layer_inputs, keep, self.config.reuse_len))
