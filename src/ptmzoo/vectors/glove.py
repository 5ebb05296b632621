"""GloVe (Pennington et al., 2014): word vectors fitted to the logarithm of co-occurrence counts.

1. Co-occurrences (``cooccur.c``): each pair of kept words at most ``window`` positions apart in
   a sentence adds 1/distance to X_ij and to X_ji (a symmetric window).
2. Weighted least squares (``glove.c``): minimise sum f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2
   with f(x) = (x / x_max)^power below x_max and 1 above it, by AdaGrad (squared gradients start
   at 1) over the non-zero X_ij in random order, in ``workers`` threads at once (Hogwild).
3. The vectors are W + W~ (glove.c's ``-model 2``).

The co-occurrence counts are accumulated from the streamed corpus in chunks (sorted and merged),
so the corpus need not fit in memory; the non-zero counts themselves must.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UserError
from .corpus import Vocabulary, batches

MERGE_ENTRIES = 1 << 24  # pending (pair, weight) entries summed into the counts at a time


@dataclass
class GloVeOptions:
    dim: int = 100
    window: int = 10  # the paper's symmetric window of 10 words each side
    min_count: int = 5
    epochs: int | None = None  # None: the paper's 50 (100 for 300 dimensions or more)
    x_max: float = 100.0
    power: float = 0.75
    alpha: float = 0.05  # AdaGrad's initial learning rate (glove.c's eta)
    workers: int = 3
    seed: int = 1

    def validate(self) -> None:
        for name in ("dim", "window", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1")
        if self.epochs is not None and self.epochs < 1:
            raise UserError("--epochs must be at least 1")
        if self.x_max <= 0 or self.power <= 0 or self.alpha <= 0:
            raise UserError("--x-max, --power and --alpha must be positive")

    @property
    def passes(self) -> int:
        return self.epochs or (100 if self.dim >= 300 else 50)


def weighting(x: np.ndarray, x_max: float = 100.0, power: float = 0.75) -> np.ndarray:
    """GloVe's f(x) = (x / x_max)^power for x < x_max, else 1."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x < x_max, (x / x_max) ** power, 1.0)


@dataclass
class Cooccurrences:
    rows: np.ndarray  # int32
    cols: np.ndarray  # int32
    counts: np.ndarray  # float64, the summed 1/distance weights

    def __len__(self) -> int:
        return len(self.counts)

    def dense(self, size: int) -> np.ndarray:
        out = np.zeros((size, size))
        out[self.rows, self.cols] = self.counts
        return out


def _sum_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=weights)


def count_cooccurrences(corpus, vocab: Vocabulary, window: int) -> Cooccurrences:
    from .kernels import cooccurrence_pairs

    size = len(vocab)
    keys, weights = np.zeros(0, np.int64), np.zeros(0)
    pending_keys, pending_weights, pending = [], [], 0

    def merge():
        nonlocal keys, weights, pending_keys, pending_weights, pending
        keys, weights = _sum_by_key(np.concatenate([keys, *pending_keys]), np.concatenate([weights, *pending_weights]))
        pending_keys, pending_weights, pending = [], [], 0

    for batch in batches(corpus, vocab):
        k, w = cooccurrence_pairs(batch.ids, batch.ends, window, size)
        # sum within the job first: far fewer entries to keep until the next merge
        k, w = _sum_by_key(k, w)
        pending_keys.append(k)
        pending_weights.append(w)
        pending += len(k)
        if pending >= MERGE_ENTRIES:
            merge()
    merge()
    if not len(keys):
        raise UserError("no two kept words share a sentence, so there are no co-occurrences; give longer "
                        "sentences or lower --min-count")
    return Cooccurrences((keys // size).astype(np.int32), (keys % size).astype(np.int32), weights)


class GloVe:
    method = "glove"

    def __init__(self, vocab: Vocabulary, options: GloVeOptions | None = None):
        self.options = options = options or GloVeOptions()
        options.validate()
        self.vocab = vocab
        size, dim = len(vocab), options.dim
        self.rng = np.random.default_rng(options.seed)
        init = lambda *shape: (self.rng.random(shape) - 0.5) / dim  # noqa: E731 (glove.c's initialisation)
        self.W, self.Wc = init(size, dim), init(size, dim)
        self.b, self.bc = init(size), init(size)
        self.grad_W, self.grad_Wc = np.ones((size, dim)), np.ones((size, dim))
        self.grad_b, self.grad_bc = np.ones(size), np.ones(size)
        self.costs: list[float] = []

    @property
    def words(self) -> list[str]:
        return self.vocab.words

    def fit(self, cooc: Cooccurrences, progress: bool = True) -> None:
        from tqdm import tqdm

        from .kernels import glove_pass

        o = self.options
        chunks = o.workers
        with ThreadPoolExecutor(chunks) as pool:
            for _ in tqdm(range(o.passes), desc="glove", unit="epoch", disable=not progress, leave=False):
                order = self.rng.permutation(len(cooc))
                parts = np.array_split(order, chunks)
                costs = pool.map(lambda part: glove_pass(part, cooc.rows, cooc.cols, cooc.counts, self.W, self.Wc,
                                                         self.b, self.bc, self.grad_W, self.grad_Wc, self.grad_b,
                                                         self.grad_bc, o.x_max, o.power, o.alpha), parts)
                self.costs.append(sum(costs) / len(cooc))
        if not np.isfinite(self.W).all():
            raise UserError("GloVe diverged (NaN vectors); lower --alpha")

    def train(self, corpus, progress: bool = True) -> dict:
        started = time.perf_counter()
        cooc = count_cooccurrences(corpus, self.vocab, self.options.window)
        counted = time.perf_counter()
        self.fit(cooc, progress)
        seconds = time.perf_counter() - started
        return {"corpus_words": self.vocab.corpus_words, "cooccurrences": len(cooc),
                "count_seconds": round(counted - started, 3), "seconds": round(seconds, 3),
                "final_cost": round(self.costs[-1], 6), "epochs": self.options.passes}

    def vectors(self) -> np.ndarray:
        return (self.W + self.Wc).astype(np.float32)

    def settings(self) -> dict:
        return {**asdict(self.options), "epochs": self.options.passes}
