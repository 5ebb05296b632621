"""Model inputs that the data pipeline derives from token ids: ELMo's characters.

A backbone that reads more than token ids declares the entries it derives and their settings
(``Backbone.derived_inputs``); the collators of pre-training and fine-tuning call
``add_derived_inputs`` with them, so the family needs no case anywhere else.

``char_ids`` (ELMo, Peters et al., 2018): each token as the UTF-8 bytes of its surface form, framed
by begin- and end-of-word characters and padded to ``max_chars`` -- the encoding of AllenNLP's
``ELMoCharacterMapper``: 0 pads, byte ``b`` is ``b + 1``, then begin-of-word, end-of-word and a
marker for special tokens ([CLS], [SEP], ... play ELMo's <S> and </S>). The surface form is the
vocabulary entry without the tokenizer's word-piece marks: a WordPiece continuation ``##ing`` is
``ing`` without a begin-of-word character (so the CNN sees that it continues a word); byte-level
BPE pieces are mapped back to their bytes (a leading space marks a word's beginning); SentencePiece's
``▁`` marks one too. With subword vocabularies there are no unknown words, so a token's characters
are a fixed row of a table built once per tokenizer.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

PAD_CHAR, BOW, EOW, SPECIAL = 0, 257, 258, 259
CHAR_VOCAB = 262  # AllenNLP's embedding rows (ids 260 and 261 are never used)
MAX_CHARS = 50


def byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: the character a byte-level BPE piece uses -> the byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def surface(token: str, kind: str, byte_map: dict[str, int] | None) -> tuple[bytes, bool]:
    """(UTF-8 bytes of the piece's text, whether it begins a word) for a vocabulary entry."""
    if kind == "wordpiece":
        if token.startswith("##"):
            return token[2:].encode("utf-8"), False
        return token.encode("utf-8"), True
    if kind == "bpe" and byte_map is not None:
        raw = bytes(byte_map.get(ch, ord("?")) for ch in token)
        return raw.lstrip(b" "), raw.startswith(b" ")
    if kind == "unigram":
        return token.lstrip("▁").encode("utf-8"), token.startswith("▁")
    return token.encode("utf-8"), True


def character_table(tokenizer, max_chars: int = MAX_CHARS) -> np.ndarray:
    """[vocab, max_chars] int64: the characters of every token id."""
    backend = tokenizer.backend
    byte_map = byte_level_decoder() if tokenizer.kind == "bpe" else None
    special = set(tokenizer.special_ids)
    table = np.zeros((tokenizer.vocab_size, max_chars), dtype=np.int64)
    for token_id in range(tokenizer.vocab_size):
        token = backend.id_to_token(token_id) or ""
        if token_id in special:
            text, opens, marks = token.encode("utf-8"), True, [SPECIAL]
        else:
            (text, opens), marks = surface(token, tokenizer.kind, byte_map), []
        chars = ([BOW] if opens else []) + marks + [b + 1 for b in text[: max_chars - 3]] + [EOW]
        table[token_id, : len(chars)] = chars
    return table


# tokenizer -> (vocabulary size, max_chars, table): built once, again if tokens were added
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def char_ids(batch: dict, tokenizer, max_chars: int = MAX_CHARS) -> np.ndarray:
    """``char_ids`` [..., max_chars] for the batch's ``input_ids`` (all zeros at padding)."""
    cached = _TABLES.get(tokenizer)
    if cached is None or cached[:2] != (tokenizer.vocab_size, max_chars):
        cached = _TABLES[tokenizer] = (tokenizer.vocab_size, max_chars, character_table(tokenizer, max_chars))
    table = cached[2]
    ids = np.asarray(batch["input_ids"])
    chars = table[np.clip(ids, 0, len(table) - 1)]
    mask = batch.get("attention_mask")
    if mask is not None:
        chars = chars * (np.asarray(mask) != 0)[..., None]
    return chars


DERIVERS = {"char_ids": char_ids}


def add_derived_inputs(batch: dict, derived: dict[str, dict], tokenizer, as_tensors: bool = False) -> dict:
    """Add the inputs a backbone derives (``{name: settings}``) to ``batch`` in place (NumPy arrays,
    or torch tensors with ``as_tensors``); returns the batch."""
    for name, settings in derived.items():
        value = DERIVERS[name](batch, tokenizer, **settings)
        if as_tensors:
            value = torch.from_numpy(value)
        batch[name] = value
    return batch
