"""The names the vector commands accept (kept apart so that the parser imports neither numba nor torch)."""

METHODS = ("word2vec", "glove", "fasttext", "nnlm")
SEGMENTS = ("jieba", "chars")  # --segment: Chinese text without spaces
