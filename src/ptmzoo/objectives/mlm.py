"""Masked language modelling (BERT): 15% of the tokens are chosen for prediction; of those 80%
become [MASK], 10% a random token and 10% stay as they are. Special tokens and padding are never
chosen. As in the original BERT data pipeline, the number chosen per sequence is exact
(round(15% of the maskable tokens), at least one), not a Bernoulli draw per token.

``masking`` chooses what is masked together (``objectives.masking``): single tokens (BERT,
RoBERTa), whole words (Google's whole-word masking; 80/10/10 still decided per token, as in
its release), ERNIE's knowledge masking (phrase and entity levels mixed with basic masking), or
SpanBERT's spans of whole words (80/10/10 decided per span, as in the paper; ``span_left`` and
``span_right`` give each masked token its span's boundary positions for the ``sbo`` objective).

The head (dense -> activation -> LayerNorm -> vocabulary projection tied to the input
embeddings, plus a bias; XLM's is the projection alone, ``model.lm_head_transform``) is evaluated
only at the chosen positions during training: the vocabulary projection is the largest matrix
product of a small model. Its loss goes through
``linear_cross_entropy``, which never holds the logits of more than a chunk of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import Head
from ..nn import activation
from ..nn.losses import linear_cross_entropy
from . import masking as select
from .base import Objective

MASKING = ("token", "whole_word", "knowledge", "span")


@dataclass
class MLMOptions(Config):
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    dynamic: bool = True  # False: the same masks every epoch (BERT's static masking)
    masking: str = "token"  # token | whole_word | knowledge (ERNIE) | span (SpanBERT)
    phrase_prob: float = 0.3  # knowledge: share of sequences masked by whole words (phrases)
    entity_prob: float = 0.3  # knowledge: share masked by entities first; the rest by basic masking
    span_p: float = 0.2  # span: geometric parameter of the span length in words
    max_span: int = 10  # span: longest span in words

    def validate(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise UserError("objectives.mlm.mask_prob must be between 0 and 1")
        if self.mask_token_prob < 0 or self.random_token_prob < 0 or self.mask_token_prob + self.random_token_prob > 1:
            raise UserError("objectives.mlm: mask_token_prob + random_token_prob must be within [0, 1]")
        if self.masking not in MASKING:
            raise UserError(f"objectives.mlm.masking must be one of {', '.join(MASKING)}, not '{self.masking}'")
        if self.phrase_prob < 0 or self.entity_prob < 0 or self.phrase_prob + self.entity_prob > 1:
            raise UserError("objectives.mlm: phrase_prob + entity_prob must be within [0, 1]")
        if not 0 < self.span_p <= 1 or self.max_span < 1:
            raise UserError("objectives.mlm: span_p must be in (0, 1] and max_span at least 1")


class MLMHead(Head):
    kind = "mlm"
    target_key = "mlm_labels"
    perplexity = True
    fills_masks = True

    def __init__(self, backbone, **options):
        super().__init__(backbone, **options)
        config = backbone.config
        # the transform ends in the size of the (tied) input embeddings: E < H in ALBERT
        embed = backbone.input_embeddings.embedding_dim
        self.dense = self.act = self.norm = None
        if backbone.mlm_head_transform:  # XLM's prediction layer is the projection alone
            self.dense = nn.Linear(config.hidden_size, embed)
            self.act = activation(config.hidden_act)
            self.norm = nn.LayerNorm(embed, eps=config.layer_norm_eps)
            nn.init.normal_(self.dense.weight, std=config.initializer_range)
            nn.init.zeros_(self.dense.bias)
        self.decoder = nn.Linear(embed, config.vocab_size)
        self.decoder.weight = backbone.input_embeddings.weight  # tied
        nn.init.zeros_(self.decoder.bias)

    def _transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden if self.dense is None else self.norm(self.act(self.dense(hidden)))

    def logits(self, out, batch):
        return self.decoder(self._transform(out.last_hidden_state))

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        hidden = self._transform(out.last_hidden_state[chosen])
        return linear_cross_entropy(hidden, self.decoder.weight, self.decoder.bias, labels[chosen])


class MaskedLM(Objective):
    name = "mlm"
    head = MLMHead
    Options = MLMOptions
    direction = "bidirectional"
    salt = 1

    def __init__(self, options: MLMOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        if tokenizer.mask_id is None:
            raise UserError("the tokenizer has no mask token; MLM needs one (train a wordpiece/char tokenizer)")
        self.special_ids = np.asarray(tokenizer.special_ids, dtype=np.int64)
        self.replacement_ids = np.setdiff1d(np.arange(tokenizer.vocab_size), self.special_ids)
        self.word_start_table = select.word_start_table(tokenizer)

    def check_objectives(self, objectives) -> None:
        other = next((o for o in objectives if isinstance(o, MaskedLM) and o is not self), None)
        if other is not None:  # the second would mask again what the first masked, without its labels
            raise UserError(f"objectives '{self.name}' and '{other.name}' both mask the same sequences; keep one "
                            "(XLM: tlm on a parallel corpus, mlm on a monolingual one prepared with --language, "
                            "one run continuing the other with --init-from)")

    def check_corpus(self, corpus) -> None:
        masking = self.options.masking
        if masking == "token" or corpus.meta.get("token_marks"):
            return
        if masking == "knowledge":
            raise UserError(f"knowledge masking needs word and entity boundaries, but {corpus.directory} has none; "
                            "prepare a segmented corpus with `ptmzoo prepare --segmentation tagged` (or spaces, jieba)")
        if self.word_start_table is None:
            raise UserError(f"{masking} masking with a character tokenizer needs word boundaries, but "
                            f"{corpus.directory} has none; prepare it with `ptmzoo prepare --segmentation "
                            "spaces` (pre-segmented text), tagged (People's Daily style) or jieba")

    def word_starts(self, batch) -> np.ndarray:
        """Per position, whether a word begins there: from the corpus marks when present, else
        from the tokenizer's word-piece markers (character tokenizers: every token)."""
        return select.word_starts(batch, self.word_start_table)

    def choose(self, row: int, candidates: np.ndarray, budget: int, word_start: np.ndarray,
               batch, rng: np.random.Generator) -> select.Units:
        """The units (arrays of positions) to corrupt in one sequence."""
        opts = self.options
        if opts.masking == "token":
            return [np.sort(rng.choice(candidates, size=budget, replace=False))]
        starts = word_start[row]
        if opts.masking == "whole_word":
            return select.fill_budget(select.words(candidates, starts), budget, rng)[0]
        if opts.masking == "span":
            return select.span_units(select.words(candidates, starts), budget, rng, opts.span_p, opts.max_span)
        marks = batch["token_marks"][row] if "token_marks" in batch else np.zeros(len(starts), dtype=np.int64)
        level = rng.choice(["basic", "phrase", "entity"],
                           p=[1 - opts.phrase_prob - opts.entity_prob, opts.phrase_prob, opts.entity_prob])
        return select.knowledge_units(candidates, starts, marks, budget, level, rng)

    def corrupt(self, ids: np.ndarray, units: select.Units, per_unit: bool, rng: np.random.Generator) -> None:
        """BERT's 80/10/10 on the chosen positions of one sequence (in place): [MASK], a random
        non-special token, or unchanged; one decision per token or, with ``per_unit``, per unit."""
        opts = self.options
        chosen = np.concatenate(units)
        draw = rng.random(len(units) if per_unit else len(chosen))
        if per_unit:
            draw = np.repeat(draw, [len(unit) for unit in units])
        to_mask = chosen[draw < opts.mask_token_prob]
        to_random = chosen[(draw >= opts.mask_token_prob) & (draw < opts.mask_token_prob + opts.random_token_prob)]
        ids[to_mask] = self.tokenizer.mask_id
        ids[to_random] = self.replacement_ids[rng.integers(len(self.replacement_ids), size=len(to_random))]

    def prepare(self, batch, keys) -> None:
        ids = batch["input_ids"]
        maskable = ~np.isin(ids, self.special_ids) & (batch["attention_mask"] == 1)
        word_start = self.word_starts(batch) if self.options.masking != "token" else None
        labels = np.full_like(ids, -100)
        opts = self.options
        spans = opts.masking == "span"
        if spans:  # each masked token's span boundaries (the tokens just outside the span)
            span_left, span_right = np.full_like(ids, -1), np.full_like(ids, -1)
        for row, (epoch, index) in enumerate(keys):
            rng = self.rng(epoch if opts.dynamic else 0, index)
            candidates = np.flatnonzero(maskable[row])
            if len(candidates) == 0:
                continue
            budget = max(1, round(len(candidates) * opts.mask_prob))
            units = self.choose(row, candidates, budget, word_start, batch, rng)
            if not units:
                continue
            chosen = np.concatenate(units)
            labels[row, chosen] = ids[row, chosen]
            self.corrupt(ids[row], units, per_unit=spans, rng=rng)
            if spans:
                for unit in units:
                    span_left[row, unit] = unit[0] - 1
                    span_right[row, unit] = min(unit[-1] + 1, ids.shape[1] - 1)
        batch["mlm_labels"] = labels
        if spans:
            batch["span_left"], batch["span_right"] = span_left, span_right


