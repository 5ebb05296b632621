"""Named vectors (ERNIE's entity vectors) in word2vec's text format: the reader and writer live
in ``ptmzoo.vectors.formats`` with the word vectors; these are the names the knowledge code uses."""

from ..vectors.formats import read_vectors, write_vectors

__all__ = ["read_vectors", "write_vectors"]
