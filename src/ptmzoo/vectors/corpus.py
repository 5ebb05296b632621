"""The corpus of the static word vectors: plain text, one sentence a line, words separated by
whitespace (gensim's ``LineSentence``), read again from the files on every pass, so corpora larger
than memory work; and the vocabulary, counted in one pass.

Chinese text is either pre-segmented (words separated by spaces), segmented on the fly with jieba
(``segment="jieba"``), or split into characters (``segment="chars"``: character vectors, e.g. to
initialise a character-tokenised Chinese BERT).
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import UserError, require_file
from ..textio import current_encoding, decode_line
from .names import SEGMENTS

MAX_SENTENCE_WORDS = 10_000  # longer lines are cut into pieces of this many words (as gensim's LineSentence)
BATCH_WORDS = 10_000  # corpus words per training job (gensim's batch_words, word2vec.c's alpha interval)


class LineCorpus:
    """Sentences (lists of words) of one or more text files (``.gz`` too), one a line, in the
    ``--encoding`` in effect when the corpus is made (UTF-8 by default)."""

    def __init__(self, paths: list[str] | str, lowercase: bool = False, segment: str | None = None):
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        if not self.paths:
            raise UserError("give at least one corpus file (--input FILE ...)")
        for path in self.paths:
            require_file(path, "corpus file")
        if segment not in (None, *SEGMENTS):
            raise UserError(f"unknown --segment '{segment}' (choose from {', '.join(SEGMENTS)})")
        self.lowercase = lowercase
        self.segment = segment
        self.encoding = current_encoding()  # training threads do not see the caller's context
        self._split = self._splitter()

    def _splitter(self):
        if self.segment == "chars":
            return lambda line: [c for c in line if not c.isspace()]
        if self.segment == "jieba":
            from ..data.prepare import Segmenter  # checks that jieba is installed

            segmenter = Segmenter("jieba")
            return lambda line: segmenter(line)[0].split()
        return str.split

    def __iter__(self) -> Iterator[list[str]]:
        for path in self.paths:
            yield from self._sentences(path)

    def _sentences(self, path: str) -> Iterator[list[str]]:
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as fh:
                offset = 0
                for number, raw in enumerate(fh, 1):  # line by line, so an error names the right line
                    line = decode_line(raw, path, number, offset, self.encoding)
                    offset += len(raw)
                    words = self._split(line.lower() if self.lowercase else line)
                    for start in range(0, len(words), MAX_SENTENCE_WORDS):
                        yield words[start:start + MAX_SENTENCE_WORDS]
        except (OSError, EOFError) as exc:  # a corrupt .gz
            raise UserError(f"{path}: cannot be read ({exc})") from None


@dataclass
class Vocabulary:
    """The words kept for training, most frequent first (ties in order of first appearance, as
    gensim), with their counts; ``corpus_words`` counts every word of one pass, kept or not."""

    words: list[str]
    counts: np.ndarray  # int64, same order as words
    corpus_words: int
    corpus_sentences: int

    def __post_init__(self):
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @property
    def kept_words(self) -> int:
        """Occurrences of kept words in one pass over the corpus."""
        return int(self.counts.sum())

    @classmethod
    def build(cls, corpus, min_count: int = 5, where: str = "the corpus") -> Vocabulary:
        if min_count < 1:
            raise UserError("--min-count must be at least 1")
        counter: Counter[str] = Counter()
        sentences = 0
        for sentence in corpus:
            counter.update(sentence)
            sentences += 1
        total = sum(counter.values())
        if not total:
            raise UserError(f"{where} holds no words; give a text file with whitespace-separated words")
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda item: -item[1])
        if not kept:
            word, count = counter.most_common(1)[0]
            raise UserError(f"no word of {where} occurs --min-count {min_count} times (the most frequent, "
                            f"{word!r}, occurs {count} times); lower --min-count or give more text")
        return cls([w for w, _ in kept], np.asarray([c for _, c in kept], dtype=np.int64), total, sentences)

    def encode(self, sentence: list[str]) -> list[int]:
        """Ids of the kept words; the others are dropped (which widens the window, as in word2vec.c)."""
        get = self.index.get
        return [i for i in map(get, sentence) if i is not None]


@dataclass
class Batch:
    """A training job: the kept words of several sentences as one id array."""

    ids: np.ndarray  # int32, the sentences one after the other
    ends: np.ndarray  # int64, where each sentence ends in ids
    corpus_words: int  # words read for this job, kept or not (for the learning-rate decay)


def batches(corpus, vocab: Vocabulary, batch_words: int = BATCH_WORDS) -> Iterator[Batch]:
    """Jobs of about ``batch_words`` corpus words each, sentences never split across jobs."""
    ids: list[int] = []
    ends: list[int] = []
    read = 0
    for sentence in corpus:
        read += len(sentence)
        encoded = vocab.encode(sentence)
        if encoded:
            ids.extend(encoded)
            ends.append(len(ids))
        if read >= batch_words:
            yield Batch(np.asarray(ids, dtype=np.int32), np.asarray(ends, dtype=np.int64), read)
            ids, ends, read = [], [], 0
    if read:
        yield Batch(np.asarray(ids, dtype=np.int32), np.asarray(ends, dtype=np.int64), read)
