"""T5's span corruption (Raffel et al., 2020, section 3.1.4): 15% of the tokens, in spans of mean
length 3, are dropped from the input; each span is replaced by one sentinel token and the target
lists the spans, each behind its sentinel:

    input:  Thank you <X> me to your party <Y> week .
    target: <X> for inviting <Y> last

Sentinels are numbered in order of appearance (``<extra_id_0>``, ``<extra_id_1>`` ...) and, as in
T5, take the ids at the top of the vocabulary: ``<extra_id_0>`` is the largest. A tokenizer
that has ``<extra_id_N>`` tokens (T5's) provides them; otherwise they are appended after the
tokenizer's vocabulary (``extra_vocab``; the pre-training job enlarges the model's vocabulary).

The noise mask follows T5's ``random_spans_noise_mask``: the numbers of noise tokens
(round(density x length)) and spans (round(noise / mean span length)) are fixed; noise and
non-noise tokens are each cut into that many non-empty segments uniformly at random, and the
segments alternate, starting with non-noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import UserError
from .seq2seq import Seq2SeqObjective


@dataclass
class SpanCorruptionOptions(Config):
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    sentinels: int = 100  # T5's extra_ids

    def validate(self) -> None:
        if not 0 < self.noise_density < 1:
            raise UserError("objectives.span_corruption.noise_density must be between 0 and 1")
        if self.mean_span_length < 1:
            raise UserError("objectives.span_corruption.mean_span_length must be at least 1")
        if self.sentinels < 1:
            raise UserError("objectives.span_corruption.sentinels must be at least 1")


def random_segmentation(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of ``segments`` non-empty pieces of ``items`` items, cut uniformly at random."""
    cuts = np.sort(rng.choice(np.arange(1, items), size=segments - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [items]]))


def random_spans_noise_mask(length: int, noise_density: float, mean_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """bool [length]: True for the noise tokens; spans alternate non-noise, noise, ..., noise."""
    if length < 2:
        return np.zeros(length, dtype=bool)  # nothing to hide in a single token and still keep context
    noise = min(max(round(length * noise_density), 1), length - 1)
    spans = min(max(round(noise / mean_span_length), 1), noise, length - noise)
    noise_lengths = random_segmentation(noise, spans, rng)
    keep_lengths = random_segmentation(length - noise, spans, rng)
    interleaved = np.stack([keep_lengths, noise_lengths], axis=1).reshape(-1)
    return np.repeat(np.arange(2 * spans) % 2 == 1, interleaved)


def apply_span_corruption(tokens: np.ndarray, noise: np.ndarray, sentinel_ids: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) without end tokens: each noise span becomes ``sentinel_ids[k]`` in the input;
    the target is ``sentinel_ids[k]`` followed by the span, for k = 0, 1, ..."""
    starts = noise & ~np.concatenate([[False], noise[:-1]])
    span_index = np.cumsum(starts) - 1  # of each noise token
    if starts.sum() > len(sentinel_ids):
        raise UserError(f"{int(starts.sum())} noise spans but only {len(sentinel_ids)} sentinels; shorten "
                        "data.seq_len or raise objectives.span_corruption.sentinels")
    with_sentinel = np.where(starts, sentinel_ids[np.clip(span_index, 0, None)], -1)
    inputs = np.where(noise, with_sentinel, tokens)
    inputs = inputs[~noise | starts]  # a noise span leaves only its sentinel
    targets = np.stack([with_sentinel, np.where(noise, tokens, -1)], axis=1).reshape(-1)
    return inputs, targets[targets >= 0]


class SpanCorruption(Seq2SeqObjective):
    name = "span_corruption"
    Options = SpanCorruptionOptions
    salt = 11

    def __init__(self, options: SpanCorruptionOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        named = [tokenizer.backend.token_to_id(f"<extra_id_{i}>") for i in range(options.sentinels)]
        if all(i is not None for i in named):
            self.sentinel_ids = np.asarray(named, dtype=np.int64)
            self.extra_vocab = 0
        else:  # appended: extra_id_0 gets the largest id, as in T5
            self.sentinel_ids = tokenizer.vocab_size + options.sentinels - 1 - np.arange(options.sentinels)
            self.extra_vocab = options.sentinels

    def corrupt(self, tokens, rng):
        opts = self.options
        noise = random_spans_noise_mask(len(tokens), opts.noise_density, opts.mean_span_length, rng)
        inputs, targets = apply_span_corruption(tokens, noise, self.sentinel_ids)
        return self.frame(inputs), self.frame(targets), None
