"""``finetune --init-embeddings DIR``: copy static word vectors into the token embedding rows of a
model's backbone, for the words both vocabularies share -- the survey's "transfer only the
embedding layer". The other rows (special tokens, sub-word pieces, words without a vector) keep
their values.

A token matches a word when it stands for a whole word and its text equals the word after the
tokenizer's own normalisation (lower-casing, accent stripping, NFKC), so cased vectors fill an
uncased BERT; when several spellings normalise to the same token the most frequent word (the first
in the file) wins. Whole-word tokens: WordPiece tokens without ``##``; byte-level BPE tokens (with
or without the leading-space mark); unigram pieces that start a word (``▁``); every token of a
character tokenizer (so Chinese character vectors, ``vectors train --segment chars``, fill a
character BERT). The vectors are copied as they are: their size must equal the embedding size.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from .keyed import WordVectors

WORD_START_MARKS = ("Ġ", "▁")  # byte-level BPE's leading space; SentencePiece's word start


def token_words(tokenizer) -> dict[int, str]:
    """The whole-word tokens of a ptmzoo ``Tokenizer``: token id -> the word's text."""
    backend = tokenizer.backend
    special = set(tokenizer.special_ids)
    out = {}
    for token_id in range(tokenizer.vocab_size):
        token = backend.id_to_token(token_id)
        if token is None or token_id in special:
            continue
        if tokenizer.kind == "wordpiece" and token.startswith("##"):
            continue
        if tokenizer.kind == "unigram" and not token.startswith("▁"):
            continue
        text = backend.decode([token_id], skip_special_tokens=False) if tokenizer.kind == "bpe" else token
        text = text.strip().lstrip("".join(WORD_START_MARKS)) if tokenizer.kind != "char" else text
        if text and "\ufffd" not in text and not any(c.isspace() for c in text):
            out[token_id] = text
    return out


def _normalizer(tokenizer):
    normalizer = tokenizer.backend.normalizer
    return (lambda word: word) if normalizer is None else normalizer.normalize_str


def shared_rows(tokenizer, vectors: WordVectors) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, vector rows) of the words both vocabularies share."""
    normalize = _normalizer(tokenizer)
    row_of: dict[str, int] = {}
    for row, word in enumerate(vectors.words):
        row_of.setdefault(normalize(word).strip(), row)  # words are most frequent first
    pairs = [(token_id, row_of[text]) for token_id, text in token_words(tokenizer).items() if text in row_of]
    ids, rows = zip(*pairs) if pairs else ((), ())
    return np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64)


def init_embeddings(backbone, tokenizer, vectors: str | WordVectors) -> int:
    """Overwrite ``backbone.input_embeddings`` rows with the vectors of the shared words; returns how
    many rows were set."""
    if isinstance(vectors, str):
        vectors = WordVectors.load(vectors)
    embedding = backbone.input_embeddings
    if vectors.dim != embedding.embedding_dim:
        raise UserError(f"--init-embeddings: the vectors have {vectors.dim} dimensions but the model's token "
                        f"embeddings have {embedding.embedding_dim}; train vectors with --dim "
                        f"{embedding.embedding_dim}")
    ids, rows = shared_rows(tokenizer, vectors)
    ids_in_table = ids < embedding.num_embeddings
    ids, rows = ids[ids_in_table], rows[ids_in_table]
    if not len(ids):
        raise UserError(f"--init-embeddings: none of the {len(vectors):,} words is a token of the model's "
                        f"tokenizer ({tokenizer.kind}); train the vectors on text segmented like the tokenizer "
                        "(Chinese character tokenizers: `ptmzoo vectors train --segment chars`)")
    weight = embedding.weight
    with torch.no_grad():
        weight[torch.from_numpy(ids).to(weight.device)] = torch.from_numpy(vectors.matrix[rows]).to(weight)
    return len(ids)
