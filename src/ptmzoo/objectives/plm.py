"""Permutation language modelling (XLNet; Yang et al., 2019).

For each sequence a factorisation order is drawn; every token is predicted from the tokens that
come before it in that order, which gives each token context from both sides while keeping an
autoregressive objective. Only the last tokens of the order are predicted (*partial prediction*):
about 1/K of the sequence (K = 6 for XLNet-Base, 7 for Large), which leaves the others a long
context and the optimisation easier. The batch carries the order as masks, not as reordered
tokens -- the sequence keeps its natural positions:

* ``perm_mask`` [B, L, L]: 1 where query i may not see key j (``models.xlnet``: the content stream
  still sees itself, the query stream never sees its own token);
* ``target_mapping`` [B, P, L]: row p is the one-hot position of prediction p (P = the most
  targets of a row; fewer fill with zero rows), and ``plm_labels`` [B, P] its token (-100: none).

The masks follow the released code (``data_utils._local_perm``): the tokens that are not
predicted all come first in the order and see each other (rank -1); the predicted tokens and the
functional ones (special tokens, padding) take the ranks of a random permutation (``perm_size``:
permuted within consecutive blocks of that many positions), and i may not see j when j is
predicted or functional and does not come before i. *Span-based prediction* (``span``, the
released ``_sample_mask``): the targets are spans of n whole words, P(n) proportional to 1/n for
n = 1..``max_span``, each placed at a random offset in a window of ``span_context`` x n tokens,
topped up with single random tokens to exactly the budget of targets.

The head is XLNet's ``lm_loss``: the vocabulary projection tied to the word embeddings, with a bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import Head
from ..nn.losses import linear_cross_entropy
from . import masking as select
from .base import Objective


@dataclass
class PLMOptions(Config):
    partial_k: float = 6.0  # K: predict the last 1/K of each order (XLNet-Large: 7)
    num_predict: int | None = None  # targets per sequence (the released code: 85 of 512); default L / K
    span: bool = True  # span-based prediction of whole words; false: single tokens drawn uniformly
    max_span: int = 5
    span_context: int = 6  # mask_alpha / mask_beta of the released code
    perm_size: int | None = None  # permute within blocks of this many positions (default: the whole sequence)

    def validate(self) -> None:
        if self.partial_k <= 1:
            raise UserError("objectives.plm.partial_k must be above 1 (the share predicted is 1/K)")
        if self.num_predict is not None and self.num_predict < 1:
            raise UserError("objectives.plm.num_predict must be at least 1")
        if self.max_span < 1 or self.span_context < 1:
            raise UserError("objectives.plm.max_span and span_context must be at least 1")
        if self.perm_size is not None and self.perm_size < 1:
            raise UserError("objectives.plm.perm_size must be at least 1")


class PLMHead(Head):
    kind = "plm"
    target_key = "plm_labels"

    def __init__(self, backbone, **options):
        super().__init__(backbone, **options)
        config = backbone.config
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight = backbone.input_embeddings.weight  # tied
        nn.init.zeros_(self.decoder.bias)

    def logits(self, out, batch):
        return self.decoder(out.last_hidden_state)

    def loss_sum(self, out, batch):
        return linear_cross_entropy(out.last_hidden_state, self.decoder.weight, self.decoder.bias,
                                    batch[self.target_key])


def span_targets(word_start: np.ndarray, budget: int, rng: np.random.Generator, max_span: int = 5,
                 context: int = 6) -> np.ndarray:
    """Which of n tokens (``word_start``: where words begin) to predict, exactly ``budget`` of them:
    spans of whole words as in XLNet's released ``_sample_mask``, then random single tokens."""
    n = len(word_start)
    chosen = np.zeros(n, dtype=bool)
    lengths = np.arange(1, max_span + 1)
    weights = 1.0 / lengths
    weights /= weights.sum()
    count = cursor = 0
    while cursor < n and count < budget:
        words = int(rng.choice(lengths, p=weights))
        window = words * context
        left = int(rng.integers(window))
        begin = cursor + left
        while begin < n and not word_start[begin]:
            begin += 1
        if begin >= n:
            break
        end, seen = begin + 1, 1
        while end < n:
            if word_start[end]:
                seen += 1
                if seen > words:
                    break
            end += 1
        if end >= n:
            break
        end = min(end, begin + budget - count)  # never more than the budget
        chosen[begin:end] = True
        count += end - begin
        cursor = end + window - left
    free = np.flatnonzero(~chosen)
    chosen[rng.choice(free, size=budget - count, replace=False)] = True
    return chosen


def permutation_ranks(length: int, rng: np.random.Generator, block: int | None = None) -> np.ndarray:
    """Each position's place in a random order; with ``block``, blocks of positions keep their order
    and are permuted within (the released code's ``perm_size``)."""
    block = block or length
    return np.concatenate([start + rng.permutation(min(block, length - start)) for start in range(0, length, block)])


def permutation_mask(ranks: np.ndarray, targets: np.ndarray, functional: np.ndarray) -> np.ndarray:
    """[L, L] float, 1 where query i may not see key j (``_local_perm``): the non-target tokens
    rank first (-1, all seeing each other); i may not see j when j is a target or functional and
    i does not come after it (a target i never sees itself either)."""
    context = ~targets & ~functional
    rank = np.where(context, -1, ranks)
    query_rank = np.where(targets, rank, rank + 1)
    return ((query_rank[:, None] <= rank[None, :]) & (targets | functional)[None, :]).astype(np.float32)


class PermutationLM(Objective):
    name = "plm"
    head = PLMHead
    Options = PLMOptions
    direction = "bidirectional"
    salt = 15

    def __init__(self, options: PLMOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.special_ids = np.asarray(tokenizer.special_ids, dtype=np.int64)
        self.word_start_table = select.word_start_table(tokenizer)

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not {"perm_mask", "target_mapping"} <= set(backbone.inputs):
            raise UserError(f"objective 'plm' needs a two-stream model that reads permutation masks; '{preset}' "
                            "does not: use an XLNet preset (xlnet-tiny)")

    def budget(self, candidates: int) -> int:
        if self.options.num_predict is not None:
            return min(self.options.num_predict, candidates)
        return min(candidates, max(1, round(candidates / self.options.partial_k)))

    def prepare(self, batch, keys) -> None:
        ids = batch["input_ids"]
        rows, length = ids.shape
        functional = np.isin(ids, self.special_ids) | (batch["attention_mask"] == 0)
        starts = select.word_starts(batch, self.word_start_table) if self.options.span else None
        perm_mask = np.ones((rows, length, length), dtype=np.float32)
        chosen = []
        for row, (epoch, index) in enumerate(keys):
            rng = self.rng(epoch, index)
            candidates = np.flatnonzero(~functional[row])
            targets = np.zeros(length, dtype=bool)
            if len(candidates):
                budget = self.budget(len(candidates))
                if self.options.span:
                    picked = span_targets(starts[row, candidates], budget, rng, self.options.max_span,
                                          self.options.span_context)
                else:
                    picked = np.zeros(len(candidates), dtype=bool)
                    picked[rng.choice(len(candidates), size=budget, replace=False)] = True
                targets[candidates[picked]] = True
            ranks = permutation_ranks(length, rng, self.options.perm_size)
            perm_mask[row] = permutation_mask(ranks, targets, functional[row])
            chosen.append(np.flatnonzero(targets))
        width = max(1, max(len(c) for c in chosen))
        mapping = np.zeros((rows, width, length), dtype=np.float32)
        labels = np.full((rows, width), -100, dtype=np.int64)
        for row, positions in enumerate(chosen):
            mapping[row, np.arange(len(positions)), positions] = 1.0
            labels[row, : len(positions)] = ids[row, positions]
        batch["perm_mask"], batch["target_mapping"], batch["plm_labels"] = perm_mask, mapping, labels
