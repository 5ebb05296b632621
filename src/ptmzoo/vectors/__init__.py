"""Static word vectors, the first paradigm of pre-training: word2vec, GloVe, FastText and Bengio's
NNLM trained on plain text, evaluated on analogies and word similarity, and used to initialise the
embedding layer of a fine-tuning model (``finetune --init-embeddings``).

    from ptmzoo.vectors import train_vectors, WordVectors
    vectors, report = train_vectors("word2vec", ["corpus.txt"], "vecs", arch="skipgram")
    WordVectors.load("vecs").most_similar("king")
"""

from .names import METHODS, SEGMENTS

__all__ = ["METHODS", "SEGMENTS", "WordVectors", "train_vectors"]


def __getattr__(name: str):
    # lazy, so that the command-line parser imports neither numba nor torch
    if name == "train_vectors":
        from .train import train_vectors

        return train_vectors
    if name == "WordVectors":
        from .keyed import WordVectors

        return WordVectors
    raise AttributeError(f"module 'ptmzoo.vectors' has no attribute '{name}'")
