"""What the sequence-to-sequence objectives share: each turns a block of tokens into a corrupted
source for the encoder and a target for the decoder, and trains the ``seq2seq_lm`` head.

A subclass implements ``corrupt(tokens, rng)`` for one row; this class frames source and target
with the model's special tokens (BART: ``<s> ... </s>``; T5: ``... </s>``), shifts the target
right behind the decoder start token to make the decoder input (teacher forcing), and pads the
batch. The special ids come from the model's config (``check_backbone``), which the pre-training
job fills from the tokenizer; before that, from the tokenizer.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..models.seq2seq import Seq2SeqLMHead
from .base import Objective

IGNORE = -100


def pad_rows(rows: list[np.ndarray], fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded [B, max length] array and its mask (1 = real)."""
    width = max(1, max(len(r) for r in rows))
    out = np.full((len(rows), width), fill, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return out, mask


class Seq2SeqObjective(Objective):
    head = Seq2SeqLMHead

    def __init__(self, options, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.bos_id = tokenizer.bos_id if tokenizer.style != "t5" else None
        self.eos_id = tokenizer.eos_id
        self.start_id = self.pad_id
        self.max_len: int | None = None

    def check_backbone(self, backbone, preset: str) -> None:
        if not backbone.is_encoder_decoder:
            raise UserError(f"objective '{self.name}' trains an encoder-decoder, and '{preset}' is not one; "
                            "use a t5-* or bart-* preset")
        config = backbone.config
        self.pad_id, self.eos_id = config.pad_token_id, config.eos_token_id
        self.bos_id = backbone.bos_token_id
        self.start_id = backbone.decoder_start_id
        self.max_len = backbone.max_length  # None: no position table (T5)

    def frame(self, tokens: np.ndarray) -> np.ndarray:
        """``[bos] tokens [eos]`` with the tokens the model has."""
        pieces = [[self.bos_id]] if self.bos_id is not None else []
        pieces += [tokens] + ([[self.eos_id]] if self.eos_id is not None else [])
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in pieces])

    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(source, labels, decoder input or None for the labels shifted right) of one row."""
        raise NotImplementedError

    def prepare(self, batch, keys) -> None:
        ids, real = batch["input_ids"], batch["attention_mask"] == 1
        sources, labels, decoder_inputs = [], [], []
        for row, (epoch, index) in enumerate(keys):
            tokens = ids[row][real[row]]
            if self.max_len is not None:  # room for the framing tokens within the position table
                tokens = tokens[: self.max_len - 2]
            source, target, decoder_input = self.corrupt(tokens, self.rng(epoch, index))
            if decoder_input is None:  # teacher forcing: the target shifted right behind the start token
                decoder_input = np.concatenate([[self.start_id], target[:-1]])
            sources.append(source)
            labels.append(target)
            decoder_inputs.append(decoder_input)
        for key in ("token_type_ids", "document_ids", "position_ids"):  # for the encoder only, and stale
            batch.pop(key, None)
        batch["input_ids"], batch["attention_mask"] = pad_rows(sources, self.pad_id)
        batch["decoder_input_ids"], _ = pad_rows(decoder_inputs, self.pad_id)
        batch["seq2seq_labels"], _ = pad_rows(labels, IGNORE)
