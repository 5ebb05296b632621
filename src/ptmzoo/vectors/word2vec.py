"""word2vec (Mikolov et al., 2013): skip-gram and CBOW, trained with negative sampling or
hierarchical softmax, as word2vec.c and gensim do it.

* Negative sampling draws words from the unigram distribution raised to 3/4 (a cumulative table
  searched by bisection, gensim's ``cum_table``); hierarchical softmax walks a Huffman tree over the
  counts (word2vec.c's linear-time construction), built once.
* Frequent words are discarded at random, each occurrence kept with probability
  sqrt(t/f) + t/f (t = ``sample``, f = the word's share of the kept corpus words; word2vec.c).
* Each centre word's window is cut to a random size in [1, window] (word2vec.c's ``b``).
* The learning rate falls linearly from ``alpha`` to ``min_alpha`` over epochs x corpus words, set
  per job of about 10,000 words.
* Training runs in the compiled kernel of ``kernels.py`` in ``workers`` threads at once (Hogwild).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UserError
from .corpus import Batch, Vocabulary, batches

NEGATIVE_POWER = 0.75
CUM_TABLE_DOMAIN = 2**31 - 1  # gensim's cumulative-table scale


@dataclass
class Word2VecOptions:
    arch: str = "cbow"  # skipgram | cbow (word2vec.c's and gensim's default is CBOW)
    loss: str = "ns"  # ns (negative sampling) | hs (hierarchical softmax)
    dim: int = 100
    window: int = 5
    min_count: int = 5
    negative: int = 5
    sample: float = 1e-3
    epochs: int = 5
    alpha: float = 0.025
    min_alpha: float = 1e-4
    workers: int = 3
    seed: int = 1
    cbow_mean: bool = True  # CBOW: the mean of the window (True) or its sum
    shrink_windows: bool = True

    def validate(self) -> None:
        if self.arch not in ("skipgram", "cbow"):
            raise UserError(f"--arch must be skipgram or cbow, not {self.arch!r}")
        if self.loss not in ("ns", "hs"):
            raise UserError(f"--loss must be ns (negative sampling) or hs (hierarchical softmax), not {self.loss!r}")
        for name in ("dim", "window", "epochs", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1")
        if self.loss == "ns" and self.negative < 1:
            raise UserError("--negative must be at least 1 with --loss ns")
        if not 0 <= self.sample < 1:
            raise UserError("--sample must be in [0, 1) (0: no subsampling; word2vec's default 1e-3)")
        if not 0 < self.min_alpha <= self.alpha:
            raise UserError("--alpha must be positive and at least --min-alpha")


# ------------------------------------------------------------------------------ tables
def negative_table(counts: np.ndarray, power: float = NEGATIVE_POWER) -> np.ndarray:
    """Cumulative table of count^power scaled to [0, 2^31 - 1]: a uniform integer below its last
    entry, searched by bisection, draws word i with probability count_i^power / sum count^power."""
    weights = counts.astype(np.float64) ** power
    return np.round(np.cumsum(weights) / weights.sum() * CUM_TABLE_DOMAIN).astype(np.int64)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec.c's subsampling: an occurrence of a word with share f of the kept words is kept with
    probability min(1, sqrt(t/f) + t/f), t = ``sample`` (all kept when sample is 0)."""
    if sample <= 0:
        return np.ones(len(counts))
    ratio = sample * counts.sum() / counts.astype(np.float64)  # t / f
    return np.minimum(1.0, np.sqrt(ratio) + ratio)


def sample_thresholds(counts: np.ndarray, sample: float) -> np.ndarray:
    """The keep probabilities as 32-bit integers, compared with 32 random bits in the kernel."""
    return (keep_probabilities(counts, sample) * (2**32 - 1)).astype(np.int64)


def job_seed(seed: int, job: int) -> int:
    """A 48-bit generator state per job, independent of which thread runs it."""
    return int(np.random.SeedSequence([seed, job]).generate_state(1, np.uint64)[0]) & ((1 << 48) - 1)


# ------------------------------------------------------------------------------ the job loop
def train_jobs(corpus, vocab: Vocabulary, epochs: int, alpha: float, min_alpha: float, workers: int, seed: int,
               train_job: Callable[[Batch, float, int], int], progress: bool = True,
               desc: str = "training") -> dict:
    """Feed jobs of the corpus, epoch after epoch, to ``workers`` threads running ``train_job(batch,
    alpha, seed)`` (a kernel that releases the GIL); the learning rate of a job falls linearly with
    the corpus words read before it. Returns the words read and trained, and the time taken."""
    from tqdm import tqdm

    total = vocab.corpus_words * epochs
    jobs: queue.Queue = queue.Queue(maxsize=2 * workers)
    lock = threading.Lock()
    state = {"trained": 0, "error": None}

    def worker() -> None:
        while (item := jobs.get()) is not None:
            if state["error"] is not None:
                continue  # drain the queue after a failure
            try:
                trained = train_job(*item)
                with lock:
                    state["trained"] += trained
            except BaseException as exc:  # reported by the producer
                state["error"] = exc

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    read, number = 0, 0
    bar = tqdm(total=total, unit="word", unit_scale=True, desc=desc, disable=not progress, leave=False)
    try:
        for _ in range(epochs):
            for batch in batches(corpus, vocab):
                rate = max(min_alpha, alpha - (alpha - min_alpha) * read / total)
                jobs.put((batch, rate, job_seed(seed, number)))
                read += batch.corpus_words
                number += 1
                bar.update(batch.corpus_words)
                if state["error"] is not None:
                    break
    finally:
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()
        bar.close()
    if state["error"] is not None:
        raise state["error"]
    seconds = time.perf_counter() - started
    return {"corpus_words": read, "trained_words": state["trained"], "seconds": round(seconds, 3),
            "words_per_s": round(read / max(seconds, 1e-9))}


# ------------------------------------------------------------------------------ the model
class Word2Vec:
    """Input vectors (the word vectors), output weights and the sampling tables for a vocabulary."""

    method = "word2vec"
    center_input = False  # skip-gram: the context word's vector predicts the centre word (word2vec.c)

    def __init__(self, vocab: Vocabulary, options: Word2VecOptions | None = None):
        self.options = options = options or Word2VecOptions()
        options.validate()
        if options.loss == "hs" and len(vocab) < 2:
            raise UserError("hierarchical softmax needs at least 2 words in the vocabulary; lower --min-count")
        self.vocab = vocab
        size, dim = len(vocab), options.dim
        rng = np.random.default_rng(options.seed)
        self.input = self._init_input(rng, size, dim)
        self.output_ns = np.zeros((size if options.loss == "ns" else 1, dim), np.float32)
        self.output_hs = np.zeros((max(size - 1, 1) if options.loss == "hs" else 1, dim), np.float32)
        self.cum_table = negative_table(vocab.counts) if options.loss == "ns" else np.ones(1, np.int64)
        self.sample_ints = sample_thresholds(vocab.counts, options.sample)
        if options.loss == "hs":
            from .kernels import huffman_tree

            self.code_starts, self.codes, self.points = huffman_tree(vocab.counts)
        else:
            self.code_starts, self.codes, self.points = (np.zeros(size + 1, np.int64), np.zeros(0, np.uint8),
                                                         np.zeros(0, np.int32))
        self.ngrams = np.zeros((1, dim), np.float32)  # FastText's subword rows; none here
        self.sub_starts = np.zeros(size + 1, np.int64)
        self.sub_ids = np.zeros(0, np.int64)

    def _init_input(self, rng: np.random.Generator, size: int, dim: int) -> np.ndarray:
        return ((rng.random((size, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)  # word2vec.c

    @property
    def words(self) -> list[str]:
        return self.vocab.words

    def train_job(self, batch: Batch, alpha: float, seed: int) -> int:
        from .kernels import train_batch

        o = self.options
        return train_batch(batch.ids, batch.ends, np.float32(alpha), seed, self.input, self.ngrams,
                           self.sub_starts, self.sub_ids, self.output_ns, self.output_hs, self.cum_table,
                           self.sample_ints, self.code_starts, self.codes, self.points, o.window,
                           o.negative if o.loss == "ns" else 0, o.arch == "skipgram", o.loss == "hs",
                           o.cbow_mean, o.shrink_windows, self.center_input)

    def train(self, corpus, progress: bool = True) -> dict:
        o = self.options
        return train_jobs(corpus, self.vocab, o.epochs, o.alpha, o.min_alpha, o.workers, o.seed, self.train_job,
                          progress, desc=f"{self.method} {o.arch} {o.loss}")

    def vectors(self) -> np.ndarray:
        """The word vectors, one row per vocabulary word."""
        return self.input

    def settings(self) -> dict:
        return asdict(self.options)
