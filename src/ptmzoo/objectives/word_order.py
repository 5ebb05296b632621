"""StructBERT's word structural objective (Wang et al., 2019): put shuffled words back in order.

After MLM has chosen its tokens, 5% of the sequence's trigrams (one starting at each content
token, so about one trigram per 20 tokens) are picked among those with no masked token, no
special token and no padding, without overlapping; the tokens inside each are shuffled, and the
model predicts the original token at every position of a shuffled trigram -- a softmax over the
vocabulary read through MLM's output layer (``WordOrderHead`` shares the MLM head's transform,
tied decoder and bias). Its mean loss is added to MLM's, as the paper trains the two jointly.

The number of trigrams of a sequence is ``shuffle_prob x`` its content tokens, rounded up or down
at random so that the expected share is exact. A shuffle never gives back the trigram as it was
(a window whose tokens are all the same has no other order and is never picked). StructBERT's
sentence structural objective is ``sop`` with ``classes: 3`` (``objectives.nsp_sop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import UserError
from .base import Objective
from .mlm import MaskedLM, MLMHead


@dataclass
class WordOrderOptions(Config):
    shuffle_prob: float = 0.05  # trigrams shuffled, per content token of the sequence
    ngram: int = 3  # tokens shuffled together (the paper's K; 3 worked best)

    def validate(self) -> None:
        if not 0 < self.shuffle_prob < 1:
            raise UserError("objectives.word_order.shuffle_prob must be between 0 and 1")
        if not 2 <= self.ngram <= 8:
            raise UserError("objectives.word_order.ngram must be between 2 and 8 (StructBERT: 3)")


class WordOrderHead(MLMHead):
    """Predicts the original tokens at the shuffled positions through the MLM head's layers (shared
    when the model has an MLM head, as in StructBERT; its own otherwise). No logits at inference:
    they would be MLM's."""

    kind = "word_order"
    target_key = "word_order_labels"
    perplexity = False  # the tokens of shuffled positions: not a language model's perplexity

    def attach(self, model) -> None:
        mlm = next((h for h in model.heads.values() if type(h) is MLMHead), None)
        if mlm is not None:
            self.dense, self.act, self.norm, self.decoder = mlm.dense, mlm.act, mlm.norm, mlm.decoder

    def logits(self, out, batch):
        return None


class WordOrder(Objective):
    name = "word_order"
    head = WordOrderHead
    Options = WordOrderOptions
    direction = "bidirectional"
    salt = 17

    def __init__(self, options: WordOrderOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.special_ids = np.asarray(tokenizer.special_ids, dtype=np.int64)

    def check_objectives(self, objectives) -> None:
        mlm = next((o for o in objectives if isinstance(o, MaskedLM)), None)
        if mlm is None or objectives.index(mlm) > objectives.index(self):
            raise UserError("objective 'word_order' shuffles tokens that MLM left unmasked and shares its output "
                            "layer; use objectives: {mlm: {}, word_order: {}} (mlm first)")

    def windows(self, free: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Start positions of the windows of ``ngram`` free positions whose tokens are not all equal."""
        k = self.options.ngram
        if len(free) < k:
            return np.zeros(0, dtype=np.int64)
        view = np.lib.stride_tricks.sliding_window_view
        inside = view(free, k).all(axis=1)
        tokens = view(ids, k)
        varied = (tokens != tokens[:, :1]).any(axis=1)
        return np.flatnonzero(inside & varied)

    def pick(self, starts: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
        """Up to ``count`` non-overlapping windows among ``starts``, in random order."""
        k = self.options.ngram
        taken: list[int] = []
        used: set[int] = set()
        for start in rng.permutation(starts):
            if len(taken) >= count:
                break
            span = range(int(start), int(start) + k)
            if used.isdisjoint(span):
                taken.append(int(start))
                used.update(span)
        return taken

    def shuffle(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random reordering of ``tokens`` (not all equal) that differs from them."""
        while True:
            shuffled = tokens[rng.permutation(len(tokens))]
            if (shuffled != tokens).any():
                return shuffled

    def prepare(self, batch, keys) -> None:
        ids = batch["input_ids"]
        free = ~np.isin(ids, self.special_ids) & (batch["attention_mask"] == 1)
        if "mlm_labels" in batch:  # tokens chosen by MLM (masked, replaced or kept) stay where they are
            chosen = batch["mlm_labels"] != -100
            content = (free | chosen).sum(axis=1)  # a [MASK] now stands where a content token was
            free &= ~chosen
        else:
            content = free.sum(axis=1)
        labels = np.full_like(ids, -100)
        k, prob = self.options.ngram, self.options.shuffle_prob
        for row, (epoch, index) in enumerate(keys):
            rng = self.rng(epoch, index)
            count = int(np.floor(prob * content[row] + rng.random()))  # expected: exactly prob x tokens
            if count == 0:
                continue
            for start in self.pick(self.windows(free[row], ids[row]), count, rng):
                window = slice(start, start + k)
                labels[row, window] = ids[row, window]
                ids[row, window] = self.shuffle(ids[row, window].copy(), rng)
        batch["word_order_labels"] = labels


