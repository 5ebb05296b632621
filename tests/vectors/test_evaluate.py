"""Analogy and similarity scores equal gensim's evaluation functions on the same vectors."""

import numpy as np
import pytest

from ptmzoo.vectors.evaluate import evaluate_analogies, evaluate_similarity, rank, spearman
from ptmzoo.vectors.keyed import WordVectors
from tests.conftest import shared_path

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning")  # gensim's own init_sims


@pytest.fixture(scope="module")
def analogy_vectors():
    """Random vectors for the words of the analogy set, plus planted answers: for some questions,
    d = b - a + c exactly, so 3CosAdd must get those right."""
    questions = shared_path("en", "wordvec_eval", "questions-words.txt")
    words = []
    for line in open(questions, encoding="utf-8"):
        if not line.startswith(":"):
            words.extend(w.lower() for w in line.split())
    words = list(dict.fromkeys(words))
    words += ["Paris", "ATHENS"]  # other spellings of question words
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(len(words), 16)).astype(np.float32)
    index = {w: i for i, w in enumerate(words)}
    for a, b, c, d in (("athens", "greece", "baghdad", "iraq"), ("boy", "girl", "brother", "sister")):
        matrix[index[d]] = matrix[index[b]] - matrix[index[a]] + matrix[index[c]]
    return WordVectors(words, matrix), questions


def test_analogies_equal_gensims(analogy_vectors):
    keyedvectors = pytest.importorskip("gensim.models.keyedvectors")
    vectors, questions = analogy_vectors
    kv = keyedvectors.KeyedVectors(vectors.dim)
    kv.add_vectors(vectors.words, vectors.matrix)
    for restrict in (300_000, 400):
        ours = evaluate_analogies(vectors, questions, restrict)
        score, sections = kv.evaluate_word_analogies(questions, restrict_vocab=restrict)
        assert ours["3cosadd"] == pytest.approx(score)
        total = sections[-1]
        assert ours["answered"] == len(total["correct"]) + len(total["incorrect"])
    assert ours["skipped"] > 0  # restricted to 400 words: most questions cannot be asked


def test_3cosmul_answers_equal_gensims(analogy_vectors, tmp_path):
    keyedvectors = pytest.importorskip("gensim.models.keyedvectors")
    vectors, questions = analogy_vectors
    kv = keyedvectors.KeyedVectors(vectors.dim)
    kv.add_vectors(vectors.words, vectors.matrix)
    small = str(tmp_path / "sample.txt")
    lines = [line for line in open(questions, encoding="utf-8") if not line.startswith(":")][:300:7]
    with open(small, "w") as fh:
        fh.write(": sample\n" + "".join(lines))
    right = 0
    for line in lines:
        a, b, c, d = line.lower().split()
        right += kv.most_similar_cosmul(positive=[b, c], negative=[a], topn=1)[0][0] == d
    assert evaluate_analogies(vectors, small)["3cosmul"] == pytest.approx(right / len(lines))


@pytest.mark.parametrize("name", ["wordsim353.tsv", "simlex999.txt"])
def test_similarity_equals_gensims(analogy_vectors, name):
    keyedvectors = pytest.importorskip("gensim.models.keyedvectors")
    path = shared_path("en", "wordvec_eval", name)
    words = sorted({w.lower() for line in open(path) if not line.startswith("#") for w in line.split("\t")[:2]})
    matrix = np.random.default_rng(1).normal(size=(len(words), 8)).astype(np.float32)
    vectors = WordVectors(words[: len(words) * 3 // 4], matrix[: len(words) * 3 // 4])  # some pairs unknown
    kv = keyedvectors.KeyedVectors(8)
    kv.add_vectors(vectors.words, vectors.matrix)
    pearson, (rho, _), oov = kv.evaluate_word_pairs(path)
    ours = evaluate_similarity(vectors, path)
    assert ours["spearman"] == pytest.approx(rho) and ours["pearson"] == pytest.approx(pearson[0], abs=1e-6)
    assert ours["skipped"] / (ours["skipped"] + ours["pairs"]) * 100 == pytest.approx(oov)


def test_spearman_with_ties_equals_scipys():
    stats = pytest.importorskip("scipy.stats")
    x = [1, 2, 2, 3, 5, 5, 5, 0.5]
    y = [2, 1, 4, 3, 3, 9, 7, 1]
    assert rank([10, 20, 20, 5]).tolist() == [2, 3.5, 3.5, 1]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_chinese_ca8_analogies_are_read_and_answered():
    path = shared_path("zh", "wordvec_eval", "semantic.txt")
    from ptmzoo.vectors.evaluate import read_analogies

    sections = read_analogies(path)
    assert len(sections) > 1 and all(len(q) == 4 for _, questions in sections for q in questions)
    a, b, c, d = sections[0][1][0]  # 广东 粤剧 浙江 越剧
    words = list(dict.fromkeys([a, b, c, d, "北京", "上海", "京剧"]))
    matrix = np.random.default_rng(2).normal(size=(len(words), 12)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    index = {w: i for i, w in enumerate(words)}
    matrix[index[d]] = matrix[index[b]] - matrix[index[a]] + matrix[index[c]]  # the 3CosAdd optimum
    result = evaluate_analogies(WordVectors(words, matrix), path)
    first = result["sections"][0]
    assert first["answered"] >= 1 and first["3cosadd"] > 0 and result["skipped"] > 0
