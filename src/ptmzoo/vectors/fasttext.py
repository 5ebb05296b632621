"""FastText (Bojanowski et al., 2017): word2vec whose input vector of a word is the mean of its own
vector and the vectors of its character n-grams (3 to 6 characters of ``<word>``, hashed into
``bucket`` rows), so words never seen in training get vectors from their n-grams.

The n-grams and their hashing are fastText's (``computeSubwords`` and its FNV-1a variant), so a
word falls into the same buckets as in fastText and gensim. As in fastText, an in-vocabulary input
is the mean over 1 + n rows (gensim divides the sum by n during training but by 1 + n when it
composes the final vectors); skip-gram: the centre word's n-grams predict each context word.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .corpus import Vocabulary
from .word2vec import Word2Vec, Word2VecOptions

NGRAMS_FILE = "ngrams.npz"


@dataclass
class FastTextOptions(Word2VecOptions):
    min_n: int = 3
    max_n: int = 6
    bucket: int = 2_000_000

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.min_n <= self.max_n:
            raise UserError("--min-n and --max-n must satisfy 1 <= min-n <= max-n")
        if self.bucket < 1:
            raise UserError("--bucket must be at least 1")


def word_ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> np.ndarray:
    """The buckets of the character n-grams of ``word`` (repeats kept, as fastText)."""
    from .kernels import ngram_hashes

    return ngram_hashes(np.frombuffer(f"<{word}>".encode("utf-8"), np.uint8), min_n, max_n, bucket)


class FastText(Word2Vec):
    method = "fasttext"
    center_input = True

    def __init__(self, vocab: Vocabulary, options: FastTextOptions | None = None):
        options = options or FastTextOptions()
        super().__init__(vocab, options)
        o = self.options
        subwords = [word_ngram_buckets(word, o.min_n, o.max_n, o.bucket) for word in vocab.words]
        self.sub_starts = np.zeros(len(vocab) + 1, np.int64)
        self.sub_starts[1:] = np.cumsum([len(s) for s in subwords])
        self.sub_ids = np.concatenate(subwords).astype(np.int64) if subwords else np.zeros(0, np.int64)
        self.ngrams = self._init_input(np.random.default_rng(o.seed + 1), o.bucket, o.dim)

    def _init_input(self, rng: np.random.Generator, size: int, dim: int) -> np.ndarray:
        rows = rng.random((size, dim), dtype=np.float32)  # uniform in [-1/dim, 1/dim) (fastText), in place
        rows *= 2
        rows -= 1
        rows /= dim
        return rows

    def vectors(self) -> np.ndarray:
        """Each word's vector: the mean of its own row and its n-gram rows (what training used)."""
        out = self.input.copy()
        for w in range(len(self.vocab)):
            rows = self.sub_ids[self.sub_starts[w]:self.sub_starts[w + 1]]
            out[w] = (out[w] + self.ngrams[rows].sum(axis=0)) / (1 + len(rows))
        return out

    def ngram_table(self) -> NgramTable:
        """The trained n-gram rows (the buckets some vocabulary word uses): enough for OOV lookup."""
        used = np.unique(self.sub_ids)
        o = self.options
        return NgramTable(o.min_n, o.max_n, o.bucket, used, self.ngrams[used].copy())


@dataclass
class NgramTable:
    """FastText's n-gram vectors for out-of-vocabulary lookup. Only the buckets that a vocabulary
    word uses were trained, so only those are kept; an OOV word's vector is the mean of the vectors
    of its n-grams that fall into kept buckets (gensim also averages the untrained, random rows)."""

    min_n: int
    max_n: int
    bucket: int
    buckets: np.ndarray  # sorted bucket ids
    vectors: np.ndarray  # one row per kept bucket

    def vector(self, word: str) -> np.ndarray | None:
        """The OOV vector of ``word``, or None when none of its n-grams was trained."""
        wanted = word_ngram_buckets(word, self.min_n, self.max_n, self.bucket)
        rows = np.searchsorted(self.buckets, wanted)
        rows = rows[(rows < len(self.buckets)) & (self.buckets[np.minimum(rows, len(self.buckets) - 1)] == wanted)]
        if not len(rows):
            return None
        return self.vectors[rows].mean(axis=0)

    def save(self, directory: str) -> str:
        from .formats import atomic_binary_file

        path = os.path.join(directory, NGRAMS_FILE)
        with atomic_binary_file(path) as fh:
            np.savez(fh, min_n=self.min_n, max_n=self.max_n, bucket=self.bucket, buckets=self.buckets,
                     vectors=self.vectors)
        return NGRAMS_FILE

    @classmethod
    def load(cls, directory: str) -> NgramTable:
        path = os.path.join(directory, NGRAMS_FILE)
        try:
            with np.load(path) as data:
                return cls(int(data["min_n"]), int(data["max_n"]), int(data["bucket"]), data["buckets"],
                           data["vectors"].astype(np.float32))
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{path}: cannot read FastText's n-gram table ({exc}); retrain the vectors") from None
