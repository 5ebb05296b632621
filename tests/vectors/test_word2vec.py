"""word2vec's numerics: the Huffman tree, the negative-sampling table, subsampling, window
shrinking, the learning-rate schedule, and training that learns and is reproducible."""

import heapq

import numpy as np
import pytest

from ptmzoo.errors import UserError
from ptmzoo.vectors import kernels
from ptmzoo.vectors.corpus import LineCorpus, Vocabulary
from ptmzoo.vectors.train import train_vectors
from ptmzoo.vectors.word2vec import Word2Vec, Word2VecOptions, keep_probabilities, negative_table, sample_thresholds
from tests.vectors.helpers import topic_corpus, topic_separation

COUNTS = np.asarray([1000, 400, 400, 120, 60, 33, 20, 7, 5, 5, 2, 1], dtype=np.int64)


def _codes(counts):
    starts, codes, points = kernels.huffman_tree(counts)
    return [codes[starts[w]:starts[w + 1]].tolist() for w in range(len(counts))], points, starts


def test_huffman_codes_are_prefix_free_complete_and_optimal():
    codes, points, starts = _codes(COUNTS)
    strings = ["".join(map(str, c)) for c in codes]
    for i, a in enumerate(strings):
        for j, b in enumerate(strings):
            assert i == j or not b.startswith(a), (a, b)
    assert sum(2.0 ** -len(s) for s in strings) == pytest.approx(1.0)  # a full binary tree (Kraft equality)
    lengths = [len(s) for s in strings]
    assert all(lengths[i] <= lengths[i + 1] for i in range(len(lengths) - 1))  # more frequent: never longer
    assert lengths[0] < lengths[-1]
    # the weighted code length equals that of a Huffman code built with a heap
    heap = [(int(c), i) for i, c in enumerate(COUNTS)]
    heapq.heapify(heap)
    cost, fresh = 0, len(COUNTS)
    while len(heap) > 1:
        (a, _), (b, _) = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, (a + b, fresh))
        fresh += 1
    assert sum(c * n for c, n in zip(COUNTS, lengths)) == cost
    # inner nodes: V - 1 rows, the root (row V - 2) first on every path
    assert points.min() >= 0 and points.max() == len(COUNTS) - 2
    assert all(points[starts[w]] == len(COUNTS) - 2 for w in range(len(COUNTS)))


def test_huffman_paths_share_inner_nodes_exactly_where_codes_share_prefixes():
    codes, points, starts = _codes(COUNTS)
    node_of_prefix = {}
    for w, code in enumerate(codes):
        for depth in range(len(code)):
            prefix = tuple(code[:depth])
            node = int(points[starts[w] + depth])
            assert node_of_prefix.setdefault(prefix, node) == node


def test_negative_sampling_draws_follow_the_unigram_to_the_three_quarters():
    table = negative_table(COUNTS)
    draws = kernels.draw_negatives(table, 400_000, 12345)
    observed = np.bincount(draws, minlength=len(COUNTS)) / len(draws)
    expected = COUNTS ** 0.75 / (COUNTS ** 0.75).sum()
    assert np.abs(observed - expected).max() < 0.004
    flat = np.ones(len(COUNTS)) / len(COUNTS)
    unigram = COUNTS / COUNTS.sum()
    assert np.abs(observed - unigram).max() > 0.05 and np.abs(observed - flat).max() > 0.05


def test_subsampling_keeps_words_with_word2vecs_probability():
    sample = 1e-2
    p = keep_probabilities(COUNTS, sample)
    f = COUNTS / COUNTS.sum()
    assert p == pytest.approx(np.minimum(1, np.sqrt(sample / f) + sample / f))
    assert p[0] < 0.3 and p[-1] == 1.0
    assert keep_probabilities(COUNTS, 0).tolist() == [1.0] * len(COUNTS)
    # the kernel keeps each occurrence with that probability
    occurrences = 20_000
    ids = np.repeat(np.arange(len(COUNTS), dtype=np.int32), occurrences)
    kept, ends, _ = kernels.subsample(ids, np.asarray([len(ids)]), sample_thresholds(COUNTS, sample), np.uint64(7))
    rates = np.bincount(kept, minlength=len(COUNTS)) / occurrences
    assert np.abs(rates - p).max() < 0.015
    assert ends.tolist() == [len(kept)]


def test_window_is_shrunk_uniformly():
    window, length = 5, 200_000
    shrunk = kernels.context_distances(length, window, True, 3)[1:] / (2 * length)
    expected = [(window - d + 1) / window for d in range(1, window + 1)]
    assert shrunk == pytest.approx(expected, abs=0.01)
    full = kernels.context_distances(length, window, False, 3)[1:] / (2 * length)
    assert full == pytest.approx([1.0] * window, abs=1e-3)


def test_learning_rate_decays_linearly_per_job(tmp_path, monkeypatch):
    path = topic_corpus(tmp_path / "c.txt", sentences=5000)  # 40,000 words: 4 jobs per epoch
    corpus = LineCorpus(path)
    vocab = Vocabulary.build(corpus, 1)
    model = Word2Vec(vocab, Word2VecOptions(epochs=2, alpha=0.05, min_alpha=0.001, workers=1))
    rates = []
    monkeypatch.setattr(model, "train_job", lambda batch, alpha, seed: rates.append(alpha) or 0)
    model.train(corpus, progress=False)
    progress = np.arange(8) * 10_000 / 80_000
    assert rates == pytest.approx(0.05 - (0.05 - 0.001) * progress, rel=1e-6)


@pytest.mark.parametrize("arch,loss", [("skipgram", "ns"), ("cbow", "ns"), ("skipgram", "hs"), ("cbow", "hs")])
def test_word2vec_learns_topics(tmp_path, arch, loss):
    path = topic_corpus(tmp_path / "c.txt")
    vectors, report = train_vectors("word2vec", path, arch=arch, loss=loss, dim=20, epochs=3, min_count=1,
                                    sample=0, workers=2, progress=False)
    assert topic_separation(vectors) > 0.3
    assert report["training"]["trained_words"] == 3 * 3000 * 8  # no subsampling: every word trained


def test_one_worker_is_reproducible_and_the_seed_matters(tmp_path):
    path = topic_corpus(tmp_path / "c.txt", sentences=500)

    def run(seed):
        return train_vectors("word2vec", path, arch="skipgram", dim=8, min_count=1, workers=1, seed=seed,
                             progress=False)[0].matrix

    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_options_are_checked():
    with pytest.raises(UserError, match="--arch must be skipgram or cbow"):
        Word2VecOptions(arch="sg").validate()
    with pytest.raises(UserError, match="--sample must be in"):
        Word2VecOptions(sample=1.5).validate()
    with pytest.raises(UserError, match="does not apply to --method word2vec"):
        train_vectors("word2vec", "unused.txt", x_max=10)
