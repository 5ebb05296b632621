"""Parallel corpora for XLM's translation language modelling (TLM).

On disk a parallel corpus is an ordinary shard directory (``data.shards``): each sentence pair is
one document of two sentences, the source then the target, so every reader of shards still
works. ``meta.json`` adds ``"parallel": {"languages": [source, target]}``. A monolingual corpus
can name its language with ``"language"`` (``ptmzoo prepare --language``).

Input: a TSV file with two columns (``source<TAB>target``) or two aligned files, one sentence a
line; lines where either side is empty are skipped.

``ParallelPairs`` builds TLM samples: ``[CLS] source [SEP] target [SEP]``, segment ids = language
ids of each half, positions restarting at 0 at the target (its first token), so the model cannot
align the two sentences by absolute position; long pairs lose tokens from the end of the longer side.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator
from itertools import zip_longest

import numpy as np

from ..errors import UserError, require_file
from ..io import atomic_directory, atomic_write_json, sigterm_interrupts
from .shards import FORMAT, FORMAT_VERSION, ShardSplit, ShardWriter, token_dtype
from .tokenizers import Tokenizer

BATCH_PAIRS = 2048


def _lines(path: str) -> Iterator[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(require_file(path, "parallel corpus file"), "rt", encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\n\r")


def read_pairs(inputs: list[str]) -> Iterator[tuple[str, str]]:
    """(source, target) from one TSV file or two aligned files."""
    if len(inputs) == 1:
        for number, line in enumerate(_lines(inputs[0]), 1):
            columns = line.split("\t")
            if len(columns) != 2 and line.strip():
                raise UserError(f"{inputs[0]}:{number}: expected two tab-separated columns (source, target), "
                                f"found {len(columns)}")
            if len(columns) == 2:
                yield columns[0], columns[1]
    elif len(inputs) == 2:
        for source, target in zip_longest(_lines(inputs[0]), _lines(inputs[1])):
            if source is None or target is None:
                raise UserError(f"{inputs[0]} and {inputs[1]} have different numbers of lines; parallel files "
                                "must be aligned line by line")
            yield source, target
    else:
        raise UserError("a parallel corpus is one TSV file (source<TAB>target) or two aligned files")


def prepare_parallel(inputs: list[str], tokenizer_path: str, out_dir: str, languages: tuple[str, str],
                     valid_fraction: float = 0.01, overwrite: bool = False) -> dict:
    """Tokenize sentence pairs into a shard directory (one two-sentence document per pair)."""
    if len(languages) != 2 or languages[0] == languages[1]:
        raise UserError("--languages needs two different languages, source then target (e.g. en,zh)")
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise UserError(f"{out_dir} already exists and is not empty; choose another --out or pass --overwrite")
    tokenizer = Tokenizer.load(tokenizer_path)
    dtype = token_dtype(tokenizer.vocab_size)
    with sigterm_interrupts(), atomic_directory(out_dir) as tmp:
        tokenizer.save(tmp)
        writers = {name: ShardWriter(os.path.join(tmp, name), dtype) for name in ("train", "valid")}
        index, pending = 0, []

        def flush():
            nonlocal index
            encoded = tokenizer.encode_with_offsets([text for pair in pending for text in pair])
            for src, tgt in zip(encoded[0::2], encoded[1::2]):
                if not src[0] or not tgt[0]:
                    continue
                held_out = math.floor((index + 1) * valid_fraction) > math.floor(index * valid_fraction)
                writers["valid" if held_out else "train"].add(np.asarray(src[0] + tgt[0]), np.asarray([0, len(src[0])]))
                index += 1
            pending.clear()

        for source, target in read_pairs(inputs):
            if source.strip() and target.strip():
                pending.append((source, target))
            if len(pending) >= BATCH_PAIRS:
                flush()
        flush()
        splits = {name: writer.close() for name, writer in writers.items()}
        if splits["train"]["docs"] == 0:
            raise UserError(f"no sentence pairs found in {', '.join(inputs)}")
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "dtype": dtype.name,
                "vocab_size": tokenizer.vocab_size, "tokenizer": tokenizer.describe(),
                "sources": [{"path": os.path.abspath(p), "format": "parallel"} for p in inputs],
                "valid_fraction": valid_fraction, "splits": splits, "parallel": {"languages": list(languages)}}
        atomic_write_json(os.path.join(tmp, "meta.json"), meta)
    return meta


class ParallelPairs:
    """TLM samples, one per sentence pair (see the module docstring)."""

    def __init__(self, split: ShardSplit, seq_len: int, cls_id: int, sep_id: int, language_ids: tuple[int, int]):
        self.split = split
        self.max_tokens = seq_len - 3  # [CLS] source [SEP] target [SEP]
        if self.max_tokens < 2:
            raise ValueError("sequence length too short for sentence pairs")
        self.cls_id, self.sep_id = cls_id, sep_id
        self.language_ids = language_ids

    def __len__(self) -> int:
        return self.split.num_docs

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = self.split.doc(index).astype(np.int64)
        starts = self.split.sentence_starts(index)
        cut = int(starts[1]) if len(starts) > 1 else len(tokens)
        source, target = tokens[:cut], tokens[cut:]
        while len(source) + len(target) > self.max_tokens:  # trim the longer side
            if len(source) >= len(target):
                source = source[:-1]
            else:
                target = target[:-1]
        return source, target

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        source, target = self.pair(index)
        first = len(source) + 2  # [CLS] source [SEP]
        ids = np.concatenate([[self.cls_id], source, [self.sep_id], target, [self.sep_id]]).astype(np.int64)
        languages = np.full(len(ids), self.language_ids[0], dtype=np.int64)
        languages[first:] = self.language_ids[1]
        positions = np.arange(len(ids), dtype=np.int64)
        positions[first:] -= first  # the target starts again at position 0
        return {"input_ids": ids, "token_type_ids": languages, "position_ids": positions, "index": index,
                "epoch": epoch}


class WithLanguage:
    """A monolingual dataset whose samples carry one language id on every token (XLM's MLM)."""

    def __init__(self, data, language_id: int):
        self.data, self.language_id = data, language_id

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        sample = self.data[key]
        sample["token_type_ids"] = np.full(len(sample["input_ids"]), self.language_id, dtype=np.int64)
        return sample
