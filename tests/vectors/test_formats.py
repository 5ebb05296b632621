"""word2vec text and binary files: round trips through gensim in both directions, and one clear
line for a broken file."""

import numpy as np
import pytest

from ptmzoo.errors import UserError
from ptmzoo.vectors.formats import (
    read_vectors,
    read_word2vec_binary,
    read_word2vec_text,
    write_word2vec_binary,
    write_word2vec_text,
)

WORDS = ["the", "北京", "naïve", "New_York", "</s>"]


@pytest.fixture
def matrix():
    return np.random.default_rng(0).normal(size=(len(WORDS), 7)).astype(np.float32)


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_what_we_write_and_we_read_what_gensim_writes(tmp_path, matrix, binary):
    keyedvectors = pytest.importorskip("gensim.models.keyedvectors")
    ours = str(tmp_path / ("ours.bin" if binary else "ours.txt"))
    (write_word2vec_binary if binary else write_word2vec_text)(ours, WORDS, matrix)
    kv = keyedvectors.KeyedVectors.load_word2vec_format(ours, binary=binary)
    assert kv.index_to_key == WORDS and np.array_equal(kv.vectors, matrix)
    theirs = str(tmp_path / ("theirs.bin" if binary else "theirs.txt"))
    kv.save_word2vec_format(theirs, binary=binary)
    words, read = read_vectors(theirs)
    assert words == WORDS and np.allclose(read, matrix, atol=0 if binary else 1e-6)
    words, read = read_vectors(ours)
    assert words == WORDS and np.array_equal(read, matrix)


def test_binary_detection_does_not_need_the_extension(tmp_path, matrix):
    path = str(tmp_path / "vectors.w2v")
    write_word2vec_binary(path, WORDS, np.zeros_like(matrix))  # all-zero floats: NUL bytes
    assert read_vectors(path)[0] == WORDS


def test_broken_files_are_one_line_errors(tmp_path, matrix):
    path = str(tmp_path / "v.bin")
    write_word2vec_binary(path, WORDS, matrix)
    data = open(path, "rb").read()
    (tmp_path / "cut.bin").write_bytes(data[:-40])
    with pytest.raises(UserError, match="truncated"):
        read_word2vec_binary(str(tmp_path / "cut.bin"))
    (tmp_path / "noheader.bin").write_bytes(data[data.index(b"\n") + 1:])
    with pytest.raises(UserError, match="first line should be 'count dim'"):
        read_word2vec_binary(str(tmp_path / "noheader.bin"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        read_word2vec_text(path)
    with pytest.raises(UserError, match="no whitespace"):
        write_word2vec_text(str(tmp_path / "x.txt"), ["two words"], matrix[:1])
    (tmp_path / "nan.txt").write_text("1 2\na nan 1\n")
    with pytest.raises(UserError, match="NaN"):
        read_vectors(str(tmp_path / "nan.txt"))
