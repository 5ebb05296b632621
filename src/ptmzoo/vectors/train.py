"""``train_vectors``: corpus -> vocabulary -> one of the four methods -> the output directory."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from ..errors import UserError
from .corpus import LineCorpus, Vocabulary
from .keyed import WordVectors, check_output_directory
from .names import METHODS


def method_classes(method: str):
    """The model class and its options dataclass."""
    if method == "word2vec":
        from .word2vec import Word2Vec, Word2VecOptions

        return Word2Vec, Word2VecOptions
    if method == "fasttext":
        from .fasttext import FastText, FastTextOptions

        return FastText, FastTextOptions
    if method == "glove":
        from .glove import GloVe, GloVeOptions

        return GloVe, GloVeOptions
    if method == "nnlm":
        from .nnlm import NNLM, NNLMOptions

        return NNLM, NNLMOptions
    raise UserError(f"unknown --method '{method}' (choose from {', '.join(METHODS)})")


def option_names(method: str) -> list[str]:
    return [f.name for f in dataclasses.fields(method_classes(method)[1])]


def build_options(method: str, options: dict[str, Any]):
    """The method's options dataclass; a setting it does not have is a one-line error."""
    _, options_class = method_classes(method)
    known = option_names(method)
    unknown = [name for name in options if name not in known]
    if unknown:
        flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
        raise UserError(f"{flags} does not apply to --method {method} (its options: "
                        f"{', '.join('--' + n.replace('_', '-') for n in known)})")
    return options_class(**options)


def train_vectors(method: str, inputs: list[str] | str, out: str | None = None, *, lowercase: bool = False,
                  segment: str | None = None, overwrite: bool = False, progress: bool = True,
                  **options: Any) -> tuple[WordVectors, dict]:
    """Train word vectors on plain-text files (one sentence a line, whitespace-separated words);
    write them to ``out`` when given. Returns the vectors and a report of the run."""
    model_class, _ = method_classes(method)
    settings = build_options(method, options)
    settings.validate()
    if out is not None:
        check_output_directory(out, overwrite)
    started = time.perf_counter()
    corpus = LineCorpus(inputs, lowercase, segment)
    where = corpus.paths[0] if len(corpus.paths) == 1 else f"the {len(corpus.paths)} corpus files"
    vocab = Vocabulary.build(corpus, settings.min_count, where)
    counted = time.perf_counter() - started
    model = model_class(vocab, settings)
    stats = model.train(corpus, progress)
    ngrams = model.ngram_table() if hasattr(model, "ngram_table") else None
    report = {"method": method, "settings": model.settings(),
              "corpus": {"files": [os.path.abspath(p) for p in corpus.paths], "lowercase": lowercase,
                         "segment": segment, "words": vocab.corpus_words, "sentences": vocab.corpus_sentences},
              "vocabulary": {"words": len(vocab), "kept_occurrences": vocab.kept_words,
                             "seconds": round(counted, 3)},
              "training": stats}
    vectors = WordVectors(model.words, model.vectors(), ngrams, report)
    if out is not None:
        vectors.save(out, report, overwrite)
    return vectors, report
