"""UniLM as a sequence-to-sequence model: fine-tuning batches and decoding with a KV cache.

Input layout (Dong et al., 2019, section 2.3): ``[CLS] source [SEP] target [SEP]``, segment 0 for
the source and 1 for the target, under the seq2seq mask. Fine-tuning masks a share of the target
tokens (the final [SEP] included, so the model learns to stop) and predicts them with the MLM
head. Decoding mirrors this: a [MASK] is appended after the target so far and its prediction is
the next token; the next step writes the chosen token into that [MASK]'s position and appends a
new [MASK]. With the cache, the source is encoded once (bidirectionally) and each step feeds only
[chosen token, MASK]: the cache is rewound by one slot so that the old [MASK] is overwritten.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..models.base import BackboneOutput
from ..nn.attention import unified_mask
from .cache import KVCache
from .decoding import (
    Generation,
    GenerationOptions,
    _Continuations,
    decode,
)
from .seq2seq import _sources

IGNORE = -100


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], batch_first=True,
                                           padding_value=value)


def mlm_head(model):
    heads = [head for head in model.heads.values() if head.kind == "mlm"]
    if not heads:
        raise UserError(f"this {model.family} model has no mlm head; UniLM generation predicts masked tokens")
    return heads[0]


TARGET_MASK_PROB = 0.7  # the paper's share of masked target tokens when fine-tuning for generation


def seq2seq_batch(sources: list[list[int]], targets: list[list[int]], mask_id: int, pad_id: int,
                  rng: np.random.Generator, mask_prob: float = TARGET_MASK_PROB) -> dict[str, torch.Tensor]:
    """A fine-tuning batch: ``sources`` framed as ``[CLS] ... [SEP]``, ``targets`` ending in [SEP];
    each target token is masked with probability ``mask_prob`` (at least one per row) and labelled."""
    ids, types, labels = [], [], []
    for source, target in zip(sources, targets):
        target = np.asarray(target, dtype=np.int64)
        chosen = rng.random(len(target)) < mask_prob
        chosen[rng.integers(len(target))] = True
        ids.append(list(source) + np.where(chosen, mask_id, target).tolist())
        types.append([0] * len(source) + [1] * len(target))
        labels.append([IGNORE] * len(source) + np.where(chosen, target, IGNORE).tolist())
    attention_mask = pad([[1] * len(row) for row in ids], 0)
    token_type_ids = pad(types, 0)
    return {"input_ids": pad(ids, pad_id), "token_type_ids": token_type_ids, "mlm_labels": pad(labels, IGNORE),
            "attention_mask": unified_mask("seq2seq", attention_mask, token_type_ids)}


class UnilmLM:
    """A UniLM run incrementally: the (left-padded) source once, then [token, MASK] per step."""

    def __init__(self, model, batch: int, max_len: int, mask_id: int):
        self.backbone = model.backbone
        self.head = mlm_head(model)
        self.cache = KVCache.for_backbone(self.backbone, batch, max_len)
        self.mask_id = mask_id
        self.position: torch.Tensor | None = None  # [B]: the position of the current [MASK]

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens from 0
        self.backbone(input_ids, attention_mask, torch.zeros_like(input_ids), positions, cache=self.cache)
        self.position = positions[:, -1] + 1
        return self._logits(input_ids.new_full((input_ids.shape[0], 1), self.mask_id), self.position[:, None])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.cache.length -= 1  # the last [MASK]'s slot now takes the token chosen for it
        ids = torch.stack([tokens, torch.full_like(tokens, self.mask_id)], dim=1)
        positions = self.position[:, None] + torch.arange(2, device=tokens.device)
        self.position = self.position + 1
        return self._logits(ids, positions)

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder(index)
        self.position = self.position[index]

    def _logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.backbone(ids, None, torch.ones_like(ids), positions, cache=self.cache)
        return self.head.logits(BackboneOutput(out.last_hidden_state[:, -1:]), {})[:, -1].float()


@torch.inference_mode()
def generate_unilm(model, inputs, tokenizer=None, *, mask_token_id: int | None = None, **options) -> Generation:
    """Targets for ``inputs`` (texts or ``[CLS] ... [SEP]`` id lists) under the seq2seq mask; greedy,
    sampling or beam search as in ``GenerationOptions``; a target ends at [SEP] (``eos_token_id``)."""
    if hasattr(model, "tokenizer") and hasattr(model, "model"):  # what ptmzoo.load returns
        model, tokenizer = model.model, tokenizer or model.tokenizer
    opts = GenerationOptions(**options)
    sources = _sources(inputs, tokenizer)
    mask_id = mask_token_id if mask_token_id is not None else (tokenizer.mask_id if tokenizer else None)
    sep_id = opts.eos_token_id if opts.eos_token_id is not None else (tokenizer.role_id("sep") if tokenizer else None)
    if mask_id is None or sep_id is None:
        raise UserError("UniLM generation needs the tokenizer's [MASK] and [SEP] tokens")
    device = model.backbone.input_embeddings.weight.device
    width = max(map(len, sources))
    input_ids = torch.full((len(sources), width), model.config.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(sources):  # left padding: every row's target starts in the same slot
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention_mask[row, width - len(ids):] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    eos_id = None if opts.ignore_eos else sep_id
    rows = _Continuations([[] for _ in sources], tokenizer, eos_id, opts.stop, live=False)
    lm = UnilmLM(model, len(sources) * opts.num_beams, width + opts.max_new_tokens + 1, mask_id)
    for _ in decode(model, lm, input_ids, attention_mask, opts, eos_id, None, rows):
        pass  # nothing streams: ``rows`` is not live
    return Generation(sources, rows.ids, rows.texts if tokenizer is not None else None, rows.reasons)
