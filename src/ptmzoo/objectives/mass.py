"""MASS: masked sequence-to-sequence pre-training (Song et al., 2019).

The encoder sees the text with one contiguous fragment (about 50% of it) replaced by ``<mask>``
tokens; the decoder predicts that fragment. Its input is the text with the fragment shifted right
by one and everything else masked, so that it can only use what the encoder provides plus the
fragment tokens it has already predicted:

    encoder:  x1 x2  _  _  _  _ x7 x8
    decoder:   _  _  _ x3 x4 x5  _  _     predicts x3 x4 x5 x6 at positions 3..6

The decoder keeps the original positions, so source and target align as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import UserError
from .seq2seq import IGNORE, Seq2SeqObjective


@dataclass
class MassOptions(Config):
    fragment_ratio: float = 0.5

    def validate(self) -> None:
        if not 0 < self.fragment_ratio < 1:
            raise UserError("objectives.mass.fragment_ratio must be between 0 and 1")


def fragment(length: int, ratio: float, rng: np.random.Generator) -> tuple[int, int]:
    """[start, end) of a fragment of round(ratio x length) tokens (at least 1) at a random place."""
    size = min(max(1, round(ratio * length)), length)
    start = int(rng.integers(0, length - size + 1))
    return start, start + size


class Mass(Seq2SeqObjective):
    name = "mass"
    Options = MassOptions
    salt = 13

    def __init__(self, options: MassOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        if tokenizer.mask_id is None:
            raise UserError("the tokenizer has no mask token; MASS needs one (train a bpe tokenizer with --style "
                            "roberta, or a wordpiece one)")
        self.mask_id = tokenizer.mask_id

    def corrupt(self, tokens, rng):
        framed = self.frame(tokens)
        inner = len(framed) - len(tokens)  # framing tokens are never masked
        first = 1 if self.bos_id is not None else 0
        start, end = fragment(len(framed) - inner, self.options.fragment_ratio, rng)
        start, end = start + first, end + first
        source = framed.copy()
        source[start:end] = self.mask_id
        decoder_input = np.full_like(framed, self.mask_id)
        decoder_input[start + 1 : end] = framed[start : end - 1]
        labels = np.full_like(framed, IGNORE)
        labels[start:end] = framed[start:end]
        return source, labels, decoder_input
