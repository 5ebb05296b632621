"""Trained word vectors: lookup (FastText's out-of-vocabulary words from their n-grams), nearest
neighbours, and the output directory of ``ptmzoo vectors train``:

    vectors.txt    word2vec text format, most frequent word first
    vectors.bin    word2vec binary format (the same vectors)
    vectors.json   how they were trained: method, settings, corpus, vocabulary, time
    ngrams.npz     FastText only: the trained n-gram vectors, for words outside the vocabulary
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..errors import UserError
from ..io import atomic_write_json, read_json
from .formats import read_vectors, write_word2vec_binary, write_word2vec_text

TEXT_FILE, BINARY_FILE, META_FILE = "vectors.txt", "vectors.bin", "vectors.json"


class WordVectors:
    def __init__(self, words: list[str], matrix: np.ndarray, ngrams=None, meta: dict | None = None):
        self.words = list(words)
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.index = {word: i for i, word in enumerate(self.words)}
        self.ngrams = ngrams  # a fasttext.NgramTable, or None
        self.meta = meta or {}
        self._unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def unit(self) -> np.ndarray:
        """The rows scaled to unit length (zero rows stay zero)."""
        if self._unit is None:
            norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
            self._unit = self.matrix / np.maximum(norms, 1e-12)
        return self._unit

    def vector(self, word: str) -> np.ndarray:
        if word in self.index:
            return self.matrix[self.index[word]]
        if self.ngrams is not None and (vector := self.ngrams.vector(word)) is not None:
            return vector
        hint = ("none of its character n-grams was seen in training" if self.ngrams is not None
                else "only FastText vectors (--method fasttext) have vectors for unseen words")
        raise UserError(f"'{word}' is not in the vocabulary ({len(self):,} words); {hint}")

    def most_similar(self, word: str, topn: int = 10) -> list[tuple[str, float]]:
        """The ``topn`` words of highest cosine similarity to ``word`` (itself excluded)."""
        query = self.vector(word)
        scores = self.unit @ (query / max(np.linalg.norm(query), 1e-12))
        if word in self.index:
            scores[self.index[word]] = -np.inf
        top = np.argpartition(-scores, min(topn, len(scores) - 1))[:topn]
        top = top[np.argsort(-scores[top])]
        return [(self.words[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    def similarity(self, a: str, b: str) -> float:
        u, v = self.vector(a), self.vector(b)
        return float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12))

    # ---- files ---------------------------------------------------------------------------------
    def save(self, directory: str, meta: dict | None = None, overwrite: bool = False) -> list[str]:
        """Write the output files into ``directory``, each atomically; returns their names. Files of
        an earlier run that this one does not write (ngrams.npz after FastText) are removed; no other
        file is touched."""
        check_output_directory(directory, overwrite)
        os.makedirs(directory, exist_ok=True)
        previous = _written_files(directory)
        files = [TEXT_FILE, BINARY_FILE]
        write_word2vec_text(os.path.join(directory, TEXT_FILE), self.words, self.matrix)
        write_word2vec_binary(os.path.join(directory, BINARY_FILE), self.words, self.matrix)
        if self.ngrams is not None:
            files.append(self.ngrams.save(directory))
        files.append(META_FILE)
        self.meta = {**(meta or self.meta), "files": files, "words": len(self), "dim": self.dim}
        atomic_write_json(os.path.join(directory, META_FILE), self.meta)
        for stale in set(previous) - set(files):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, stale))
        return files

    @classmethod
    def load(cls, path: str) -> WordVectors:
        """A directory written by ``ptmzoo vectors train``, or one vector file in either format."""
        if not os.path.isdir(path):
            words, matrix = read_vectors(path)
            return cls(words, matrix)
        meta_path = os.path.join(path, META_FILE)
        meta = read_json(meta_path) if os.path.exists(meta_path) else {}
        files = [f for f in (BINARY_FILE, TEXT_FILE) if os.path.exists(os.path.join(path, f))]
        if not files:
            raise UserError(f"{path} holds no {BINARY_FILE} or {TEXT_FILE}; train vectors into it with "
                            "`ptmzoo vectors train --out DIR`, or give a vector file")
        words, matrix = read_vectors(os.path.join(path, files[0]))
        ngrams = None
        from .fasttext import NGRAMS_FILE, NgramTable

        if NGRAMS_FILE in meta.get("files", []):
            ngrams = NgramTable.load(path)
        return cls(words, matrix, ngrams, meta)


def _written_files(directory: str) -> list[str]:
    with contextlib.suppress(OSError, ValueError):
        return [f for f in read_json(os.path.join(directory, META_FILE)).get("files", []) if os.sep not in f]
    return []


def check_output_directory(directory: str, overwrite: bool) -> None:
    """Refuse a file, or a non-empty directory without ``overwrite``."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"--out {directory} is a file; give a directory")
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        raise UserError(f"--out {directory} exists and is not empty; choose another directory or pass --overwrite "
                        "(only the files ptmzoo writes there are replaced)")
