"""FastText: fastText's character n-grams and hashing (gensim's buckets), vectors composed from
them, and vectors for words outside the vocabulary."""

import numpy as np
import pytest

from ptmzoo.vectors.corpus import LineCorpus, Vocabulary
from ptmzoo.vectors.fasttext import FastText, FastTextOptions, NgramTable, word_ngram_buckets
from ptmzoo.vectors.keyed import WordVectors
from ptmzoo.vectors.train import train_vectors
from tests.vectors.helpers import topic_corpus, topic_separation

WORDS = ["where", "a", "of", "naïve", "北京大学", "Ünïcödé", "😀ok", "x" * 30]


def fasttext_hash(data: bytes) -> int:
    """fastText's dictionary hash, written out: FNV-1a over the bytes taken as signed chars."""
    h = 2166136261
    for byte in data:
        signed = byte - 256 if byte > 127 else byte
        h = ((h ^ (signed & 0xFFFFFFFF)) * 16777619) & 0xFFFFFFFF
    return h


def fasttext_ngrams(word: str, min_n: int, max_n: int) -> list[bytes]:
    """fastText's computeSubwords: character n-grams of <word>, not the bare boundary markers."""
    chars = list(f"<{word}>")
    out = []
    for i in range(len(chars)):
        for n in range(1, max_n + 1):
            if i + n > len(chars):
                break
            if n >= min_n and not (n == 1 and (i == 0 or i + n == len(chars))):
                out.append("".join(chars[i:i + n]).encode("utf-8"))
    return out


@pytest.mark.parametrize("word", WORDS)
def test_ngram_buckets_are_fasttexts(word):
    expected = [fasttext_hash(g) % 2_000_000 for g in fasttext_ngrams(word, 3, 6)]
    assert word_ngram_buckets(word, 3, 6, 2_000_000).tolist() == expected


def test_ngram_buckets_equal_gensims():
    gensim_fasttext = pytest.importorskip("gensim.models.fasttext")
    for word in WORDS:
        for min_n, max_n, bucket in ((3, 6, 2_000_000), (1, 3, 1000), (2, 5, 97)):
            assert word_ngram_buckets(word, min_n, max_n, bucket).tolist() == \
                   list(gensim_fasttext.ft_ngram_hashes(word, min_n, max_n, bucket))


def test_word_vectors_are_the_mean_of_the_word_and_its_ngrams(tmp_path):
    corpus = LineCorpus(topic_corpus(tmp_path / "c.txt", sentences=50))
    model = FastText(Vocabulary.build(corpus, 1), FastTextOptions(dim=6, bucket=5000))
    word = "horse"
    w = model.vocab.index[word]
    rows = word_ngram_buckets(word, 3, 6, 5000)
    expected = (model.input[w] + model.ngrams[rows].sum(0)) / (1 + len(rows))
    assert model.vectors()[w] == pytest.approx(expected, abs=1e-7)


def test_oov_vectors_come_from_the_trained_ngrams(tmp_path):
    path = topic_corpus(tmp_path / "c.txt")
    vectors, _ = train_vectors("fasttext", path, arch="skipgram", dim=24, epochs=3, min_count=1, bucket=20_000,
                               workers=2, progress=False)
    assert topic_separation(vectors) > 0.3
    table = vectors.ngrams
    oov = "horsey"
    assert oov not in vectors
    rows = [int(np.searchsorted(table.buckets, b)) for b in word_ngram_buckets(oov, 3, 6, 20_000)
            if b in set(table.buckets.tolist())]
    assert rows and vectors.vector(oov) == pytest.approx(table.vectors[rows].mean(0), abs=1e-6)
    # an unseen spelling lands beside the word it shares its n-grams with
    neighbours = [w for w, _ in vectors.most_similar(oov, 3)]
    assert "horse" in neighbours
    assert table.vector("qqqq") is None  # no n-gram of it was trained


def test_ngram_table_survives_the_output_directory(tmp_path):
    path = topic_corpus(tmp_path / "c.txt", sentences=200)
    trained, _ = train_vectors("fasttext", path, str(tmp_path / "out"), dim=8, min_count=1, bucket=3000,
                               progress=False)
    loaded = WordVectors.load(str(tmp_path / "out"))
    assert isinstance(loaded.ngrams, NgramTable) and loaded.ngrams.bucket == 3000
    assert loaded.vector("sheepish") == pytest.approx(trained.vector("sheepish"))
    assert loaded.meta["method"] == "fasttext" and "ngrams.npz" in loaded.meta["files"]
