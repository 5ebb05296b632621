"""GloVe: co-occurrence counts and the weighting function against direct computations, and the
AdaGrad step of the weighted least squares against a numpy implementation of the paper."""

import math
from collections import defaultdict

import numpy as np
import pytest

from ptmzoo.vectors import kernels
from ptmzoo.vectors.corpus import LineCorpus, Vocabulary
from ptmzoo.vectors.glove import GloVe, GloVeOptions, count_cooccurrences, weighting
from ptmzoo.vectors.train import train_vectors
from tests.vectors.helpers import topic_corpus, topic_separation

TEXT = """the cat sat on the mat
the dog sat on the log and the cat saw the dog
a rare word here
on the mat the cat
"""


def direct_counts(lines, vocab, window):
    """X[i][j] += 1/d for each pair of kept words d <= window apart in a line, both directions."""
    counts = defaultdict(float)
    for line in lines:
        ids = [vocab.index[w] for w in line.split() if w in vocab.index]  # rare words dropped first
        for i in range(len(ids)):
            for j in range(max(0, i - window), i):
                counts[ids[i], ids[j]] += 1 / (i - j)
                counts[ids[j], ids[i]] += 1 / (i - j)
    return counts


@pytest.mark.parametrize("window", [1, 2, 5])
def test_cooccurrence_counts_equal_a_direct_computation(tmp_path, window):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    corpus = LineCorpus(str(path))
    vocab = Vocabulary.build(corpus, 2)
    assert "rare" not in vocab.index
    cooc = count_cooccurrences(corpus, vocab, window)
    expected = direct_counts(TEXT.splitlines(), vocab, window)
    got = {(int(i), int(j)): float(x) for i, j, x in zip(cooc.rows, cooc.cols, cooc.counts)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value)
    dense = cooc.dense(len(vocab))
    assert np.allclose(dense, dense.T)  # a symmetric window


def test_counts_merge_across_chunks(tmp_path, monkeypatch):
    path = topic_corpus(tmp_path / "c.txt", sentences=4000)  # 32,000 words: 4 jobs
    corpus = LineCorpus(path)
    vocab = Vocabulary.build(corpus, 1)
    whole = count_cooccurrences(corpus, vocab, 3).dense(len(vocab))
    monkeypatch.setattr("ptmzoo.vectors.glove.MERGE_ENTRIES", 10)  # merge after every job
    assert np.allclose(count_cooccurrences(corpus, vocab, 3).dense(len(vocab)), whole)


def test_weighting_function():
    x = np.asarray([0.5, 1, 10, 99.9, 100, 250])
    assert weighting(x) == pytest.approx([(v / 100) ** 0.75 if v < 100 else 1.0 for v in x])
    assert weighting(np.asarray([5.0]), x_max=10, power=0.5) == pytest.approx([math.sqrt(0.5)])
    assert np.all(np.diff(weighting(np.linspace(0.1, 300, 50))) >= 0)  # non-decreasing, capped at 1
    assert weighting(np.asarray([1e6])).item() == 1.0


def test_adagrad_step_follows_the_paper():
    rng = np.random.default_rng(0)
    V, d = 5, 4
    W, Wc = rng.normal(size=(V, d)), rng.normal(size=(V, d))
    b, bc = rng.normal(size=V), rng.normal(size=V)
    gW, gWc = 1 + rng.random((V, d)), 1 + rng.random((V, d))
    gb, gbc = 1 + rng.random(V), 1 + rng.random(V)
    rows, cols, x = np.asarray([1, 3], np.int32), np.asarray([2, 0], np.int32), np.asarray([3.5, 250.0])
    state = [a.copy() for a in (W, Wc, b, bc, gW, gWc, gb, gbc)]
    cost = kernels.glove_pass(np.arange(2), rows, cols, x, *state, 100.0, 0.75, 0.05)
    expected_cost = 0.0
    for i, j, value in zip(rows, cols, x):  # J = f(X) (w.w~ + b + b~ - log X)^2, AdaGrad on each parameter
        diff = W[i] @ Wc[j] + b[i] + bc[j] - np.log(value)
        f = weighting(np.asarray([value])).item()
        expected_cost += 0.5 * f * diff ** 2
        grad_w, grad_wc, grad_b = f * diff * Wc[j], f * diff * W[i], f * diff
        W[i] -= 0.05 * grad_w / np.sqrt(gW[i])
        Wc[j] -= 0.05 * grad_wc / np.sqrt(gWc[j])
        b[i] -= 0.05 * grad_b / np.sqrt(gb[i])
        bc[j] -= 0.05 * grad_b / np.sqrt(gbc[j])
        gW[i] += (0.05 * grad_w) ** 2
        gWc[j] += (0.05 * grad_wc) ** 2
        gb[i] += (0.05 * grad_b) ** 2
        gbc[j] += (0.05 * grad_b) ** 2
    assert cost == pytest.approx(expected_cost)
    for got, want in zip(state, (W, Wc, b, bc, gW, gWc, gb, gbc)):
        assert got == pytest.approx(want)


def test_glove_lowers_its_cost_and_learns_topics(tmp_path):
    path = topic_corpus(tmp_path / "c.txt")
    corpus = LineCorpus(path)
    model = GloVe(Vocabulary.build(corpus, 1), GloVeOptions(dim=16, window=4, epochs=15, x_max=10, workers=2))
    report = model.train(corpus, progress=False)
    assert model.costs[-1] < 0.5 * model.costs[0] and report["epochs"] == 15
    vectors, _ = train_vectors("glove", path, dim=16, window=4, epochs=15, x_max=10, min_count=1, progress=False)
    assert topic_separation(vectors) > 0.3


def test_paper_epochs_by_default():
    assert GloVeOptions().passes == 50 and GloVeOptions(dim=300).passes == 100 and GloVeOptions(epochs=3).passes == 3
