"""BART's noising functions (Lewis et al., 2020, section 2.2); the decoder reconstructs the
original text. Any combination, applied in this order:

* sentence permutation -- the document's sentences (ended by ``.``, ``!``, ``?``, ``。`` ... or a
  document separator) are shuffled; ``sentence_permutation`` is the fraction of them that move;
* token masking -- that fraction of the tokens becomes ``<mask>``, each on its own;
* token deletion -- that fraction of the tokens is removed (the model must find where);
* text infilling -- spans with lengths drawn from Poisson(λ = 3) cover that fraction of the
  tokens; each span is replaced by a single ``<mask>``, and a span of length 0 inserts one;
* document rotation -- with that probability, the document is rotated to start at a random token.

BART-large used text infilling (30%) with sentence permutation, the defaults here. Unlike
fairseq, spans never overlap, so that exactly the asked fraction of tokens is masked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import UserError
from .seq2seq import Seq2SeqObjective

SENTENCE_ENDS = (".", "!", "?", "。", "！", "？")


@dataclass
class DenoisingOptions(Config):
    token_masking: float = 0.0
    token_deletion: float = 0.0
    text_infilling: float = 0.3
    poisson_lambda: float = 3.0
    sentence_permutation: float = 1.0
    document_rotation: float = 0.0

    def validate(self) -> None:
        for name in ("token_masking", "token_deletion", "text_infilling", "sentence_permutation",
                     "document_rotation"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"objectives.denoising.{name} must be in [0, 1]")
        if self.token_masking + self.token_deletion + self.text_infilling >= 1:
            raise UserError("objectives.denoising: token_masking + token_deletion + text_infilling must be below 1")
        if self.poisson_lambda <= 0:
            raise UserError("objectives.denoising.poisson_lambda must be positive")


def choose(length: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """bool [length] with exactly round(fraction x length) True, uniformly placed."""
    chosen = np.zeros(length, dtype=bool)
    chosen[rng.choice(length, size=round(fraction * length), replace=False)] = True
    return chosen


def permute_sentences(tokens: np.ndarray, is_end: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Shuffle ``fraction`` of the sentences (a sentence ends at a token with ``is_end``)."""
    bounds = np.concatenate([[0], np.flatnonzero(is_end) + 1])
    if bounds[-1] != len(tokens):
        bounds = np.append(bounds, len(tokens))
    sentences = [tokens[a:b] for a, b in itertools.pairwise(bounds)]
    moving = np.flatnonzero(choose(len(sentences), fraction, rng))
    order = np.arange(len(sentences))
    order[moving] = rng.permutation(moving)
    return np.concatenate([sentences[i] for i in order]) if sentences else tokens


def poisson_span_lengths(total: int, lam: float, rng: np.random.Generator) -> np.ndarray:
    """Span lengths ~ Poisson(lam), drawn until they cover ``total`` tokens; the last is cut to fit."""
    lengths: list[int] = []
    covered = 0
    while covered < total:
        draw = rng.poisson(lam, size=max(8, int(2 * (total - covered) / lam) + 1))
        for n in draw:
            lengths.append(int(min(n, total - covered)))
            covered += lengths[-1]
            if covered >= total:
                break
    return np.asarray(lengths, dtype=np.int64)


def infill(tokens: np.ndarray, fraction: float, lam: float, mask_id: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Text infilling: (noised tokens, span lengths). The spans (lengths ~ Poisson(lam)) cover
    round(fraction x length) tokens without overlapping; each becomes one ``mask_id``."""
    lengths = poisson_span_lengths(round(fraction * len(tokens)), lam, rng)
    if len(lengths) == 0:
        return tokens, lengths
    # The unmasked tokens are split into len(lengths) + 1 gaps (possibly empty) at random points.
    kept = len(tokens) - int(lengths.sum())
    gaps = np.diff(np.concatenate([[0], np.sort(rng.integers(0, kept + 1, size=len(lengths))), [kept]]))
    pieces, position = [], 0
    for gap, span in zip(gaps, lengths):
        pieces += [tokens[position : position + gap], [mask_id]]
        position += gap + span
    pieces.append(tokens[position:])
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in pieces]), lengths


def rotate(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The document rotated to start at a random token (other than the first)."""
    if len(tokens) < 2:
        return tokens
    return np.roll(tokens, -int(rng.integers(1, len(tokens))))


class Denoising(Seq2SeqObjective):
    name = "denoising"
    Options = DenoisingOptions
    salt = 12

    def __init__(self, options: DenoisingOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.mask_id = tokenizer.mask_id
        if self.mask_id is None and (options.token_masking or options.text_infilling):
            raise UserError("the tokenizer has no mask token; BART's masking and infilling need one "
                            "(train a bpe tokenizer with --style roberta)")
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        ends = [i for token, i in vocab.items() if token.lstrip("▁Ġ") in SENTENCE_ENDS and token.lstrip("▁Ġ")]
        self.sentence_end_ids = np.asarray(ends + [tokenizer.document_separator_id], dtype=np.int64)

    def noise(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        opts = self.options
        if opts.sentence_permutation > 0:
            tokens = permute_sentences(tokens, np.isin(tokens, self.sentence_end_ids), opts.sentence_permutation, rng)
        if opts.token_masking > 0:
            tokens = np.where(choose(len(tokens), opts.token_masking, rng), self.mask_id, tokens)
        if opts.token_deletion > 0:
            tokens = tokens[~choose(len(tokens), opts.token_deletion, rng)]
        if opts.text_infilling > 0:
            tokens, _ = infill(tokens, opts.text_infilling, opts.poisson_lambda, self.mask_id, rng)
        if opts.document_rotation > 0 and rng.random() < opts.document_rotation:
            tokens = rotate(tokens, rng)
        return tokens

    def corrupt(self, tokens, rng):
        return self.frame(self.noise(tokens, rng)), self.frame(tokens), None
