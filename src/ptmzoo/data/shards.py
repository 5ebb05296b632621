"""Token shards: a tokenized corpus on disk, read through memory maps.

Layout of a shard directory::

    meta.json                 format, dtype, vocabulary size, tokenizer fingerprint, per-split stats
    tokenizer.json ...        the tokenizer the shards were made with
    train/00000.bin           flat token ids (uint16 when the vocabulary fits, else uint32)
    train/00000.docs.npy      int64 document boundaries in that shard: [0, end_0, end_1, ...]
    train/00000.sents.npy     int64 token offsets where sentences start (for sentence-pair tasks)
    train/00000.marks.bin     optional, uint8 per token: word and entity boundaries of a segmented
                              corpus (WORD_START | ENTITY | ENTITY_START); meta.json "token_marks"
    train/00000.entities.bin  optional (ERNIE, ``prepare --entities``), per token the id of the
                              entity whose mention begins there, 0 elsewhere; meta.json "entities"
    entities.txt, entities.npy   with entity ids: the entity names (id i = line i) and their
                              vectors (float32 [count, dim]; row i - 1 is entity i)
    valid/...                 the held-out split, same layout

Tokens are stored without special tokens; objectives add them when they build sequences.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..io import read_json
from ..textio import read_text

FORMAT = "ptmzoo-shards"
FORMAT_VERSION = 1

# Bits of the per-token marks (whole-word, phrase and entity masking). Old shards have no marks
# file; readers then see ``marks=None`` and objectives fall back to the tokenizer's word pieces.
WORD_START = 1  # the token begins a word of the segmentation
ENTITY = 2  # the token is inside a named-entity span
ENTITY_START = 4  # the token begins a named-entity span

MARKS_SUFFIX, ENTITIES_SUFFIX = ".marks.bin", ".entities.bin"  # per-token arrays beside the tokens
ENTITY_NAMES, ENTITY_VECTORS = "entities.txt", "entities.npy"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class ShardWriter:
    """Appends documents to numbered shards of at most ``shard_tokens`` tokens each."""

    def __init__(self, directory: str, dtype: np.dtype, shard_tokens: int = 100_000_000, marks: bool = False,
                 entity_dtype: np.dtype | None = None):
        self.directory = directory
        self.dtype = dtype
        self.shard_tokens = shard_tokens
        self.marks = marks
        self.entities = entity_dtype is not None
        self.side = {suffix: np.dtype(kind) for suffix, kind, wanted in
                     ((MARKS_SUFFIX, np.uint8, marks), (ENTITIES_SUFFIX, entity_dtype, self.entities)) if wanted}
        self.shards: list[dict] = []
        os.makedirs(directory, exist_ok=True)
        self._open_shard()

    def _open_shard(self) -> None:
        self._name = f"{len(self.shards):05d}"
        # held open across add() calls and closed in _close_shard, so no context manager
        self._file = open(os.path.join(self.directory, self._name + ".bin"), "wb")  # noqa: SIM115
        self._side = {suffix: open(os.path.join(self.directory, self._name + suffix), "wb")  # noqa: SIM115
                      for suffix in self.side}
        self._docs = [0]
        self._sents: list[np.ndarray] = []
        self._tokens = 0

    def _close_shard(self) -> None:
        self._file.close()
        for file in self._side.values():
            file.close()
        np.save(os.path.join(self.directory, self._name + ".docs.npy"), np.asarray(self._docs, dtype=np.int64))
        sents = np.concatenate(self._sents) if self._sents else np.zeros(0, dtype=np.int64)
        np.save(os.path.join(self.directory, self._name + ".sents.npy"), sents.astype(np.int64))
        self.shards.append({"name": self._name, "tokens": self._tokens, "docs": len(self._docs) - 1})

    def add(self, tokens: np.ndarray, sentence_starts: np.ndarray, marks: np.ndarray | None = None,
            entities: np.ndarray | None = None) -> None:
        """Append one document; ``sentence_starts`` are token offsets within it (0 first);
        ``marks`` (one uint8 per token) when the writer keeps marks, ``entities`` (one entity id
        per token) when it keeps entity ids."""
        if len(tokens) == 0:
            return
        if (marks is not None) != self.marks:
            raise ValueError("give token marks for every document of a marked shard, and only then")
        if (entities is not None) != self.entities:
            raise ValueError("give entity ids for every document of a shard with entities, and only then")
        if self._tokens and self._tokens + len(tokens) > self.shard_tokens:
            self._close_shard()
            self._open_shard()
        self._file.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        for suffix, values in ((MARKS_SUFFIX, marks), (ENTITIES_SUFFIX, entities)):
            if suffix in self._side:
                self._side[suffix].write(np.asarray(values, dtype=self.side[suffix]).tobytes())
        self._sents.append(np.asarray(sentence_starts, dtype=np.int64) + self._tokens)
        self._tokens += len(tokens)
        self._docs.append(self._tokens)

    def close(self) -> dict:
        self._close_shard()
        if self.shards and self.shards[-1]["docs"] == 0 and len(self.shards) > 1:
            last = self.shards.pop()
            for suffix in (".bin", ".docs.npy", ".sents.npy", *self.side):
                os.remove(os.path.join(self.directory, last["name"] + suffix))
        return {
            "shards": self.shards,
            "tokens": sum(s["tokens"] for s in self.shards),
            "docs": sum(s["docs"] for s in self.shards),
        }


@dataclass
class ShardSplit:
    """One split (train or valid) of a shard directory, memory-mapped."""

    tokens: list[np.ndarray]  # per shard, memory-mapped
    doc_shard: np.ndarray  # [D] which shard holds document d
    doc_start: np.ndarray  # [D] offset of document d in its shard
    doc_len: np.ndarray  # [D]
    sents: list[np.ndarray]  # per shard, sentence start offsets (sorted)
    marks: list[np.ndarray] | None = None  # per shard, memory-mapped token marks (segmented corpora)
    entities: list[np.ndarray] | None = None  # per shard, memory-mapped entity ids (ERNIE corpora)

    @property
    def num_docs(self) -> int:
        return len(self.doc_len)

    @property
    def num_tokens(self) -> int:
        return int(self.doc_len.sum())

    def _doc_slice(self, arrays: list[np.ndarray] | None, d: int) -> np.ndarray | None:
        if arrays is None:
            return None
        start = self.doc_start[d]
        return arrays[self.doc_shard[d]][start : start + self.doc_len[d]]

    def doc(self, d: int) -> np.ndarray:
        return self._doc_slice(self.tokens, d)

    def doc_marks(self, d: int) -> np.ndarray | None:
        return self._doc_slice(self.marks, d)

    def doc_entities(self, d: int) -> np.ndarray | None:
        return self._doc_slice(self.entities, d)

    def sentence_starts(self, d: int) -> np.ndarray:
        """Token offsets (relative to the document) where its sentences start."""
        shard, start, length = self.doc_shard[d], self.doc_start[d], self.doc_len[d]
        sents = self.sents[shard]
        lo, hi = np.searchsorted(sents, [start, start + length])
        return sents[lo:hi] - start


def _memmap(path: str, dtype: np.dtype, size: int) -> np.ndarray:
    return np.memmap(path, dtype=dtype, mode="r", shape=(size,)) if size else np.zeros(0, dtype=dtype)


class ShardedCorpus:
    """A shard directory: ``meta``, ``split(name)`` and the tokenizer stored beside the shards."""

    def __init__(self, directory: str):
        meta_path = os.path.join(directory, "meta.json")
        if not os.path.isdir(directory):
            raise UserError(f"shard directory not found: {directory}; create it with `ptmzoo prepare`")
        if not os.path.exists(meta_path):
            raise UserError(f"{directory} has no meta.json; it is not a shard directory made by `ptmzoo prepare`")
        try:
            meta = read_json(meta_path)
        except ValueError:
            raise UserError(f"{meta_path} is corrupt (not JSON); run `ptmzoo prepare` again") from None
        if meta.get("format") != FORMAT:
            raise UserError(f"{directory} is not a ptmzoo shard directory (meta.json format is {meta.get('format')!r})")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(f"{directory} was written by a newer ptmzoo; upgrade ptmzoo to read it")
        self.directory = directory
        self.meta = meta
        self.dtype = np.dtype(meta["dtype"])

    def has_split(self, name: str) -> bool:
        info = self.meta["splits"].get(name)
        return bool(info and info["tokens"] > 0)

    def split(self, name: str) -> ShardSplit:
        info = self.meta["splits"].get(name)
        if not info or info["tokens"] == 0:
            raise UserError(f"{self.directory} has no '{name}' split with tokens")
        tokens, sents, shard_ids, starts, lens = [], [], [], [], []
        marks: list[np.ndarray] | None = [] if self.meta.get("token_marks") else None
        entities: list[np.ndarray] | None = [] if self.meta.get("entities") else None
        for index, shard in enumerate(info["shards"]):
            base = os.path.join(self.directory, name, shard["name"])
            try:
                size = os.path.getsize(base + ".bin") // self.dtype.itemsize
                if size != shard["tokens"]:
                    raise UserError(f"{base}.bin holds {size} tokens, meta.json says {shard['tokens']}; "
                                    "the shards are damaged, run `ptmzoo prepare` again")
                tokens.append(_memmap(base + ".bin", self.dtype, size))
                bounds = np.load(base + ".docs.npy")
                sents.append(np.load(base + ".sents.npy"))
                if marks is not None:
                    marks.append(_memmap(base + MARKS_SUFFIX, np.dtype(np.uint8), size))
                if entities is not None:
                    entities.append(_memmap(base + ENTITIES_SUFFIX, np.dtype(self.meta["entities"]["dtype"]), size))
            except FileNotFoundError as exc:
                raise UserError(f"shard file missing: {exc.filename}; run `ptmzoo prepare` again") from None
            shard_ids.append(np.full(len(bounds) - 1, index, dtype=np.int32))
            starts.append(bounds[:-1])
            lens.append(np.diff(bounds))
        return ShardSplit(tokens, np.concatenate(shard_ids), np.concatenate(starts), np.concatenate(lens), sents,
                          marks, entities)

    def entities(self) -> tuple[list[str], np.ndarray] | None:
        """The entity names (id i = ``names[i - 1]``) and their vectors, for shards made with
        ``prepare --entities``; None otherwise."""
        if not self.meta.get("entities"):
            return None
        try:
            names = read_text(os.path.join(self.directory, ENTITY_NAMES), encoding="utf-8").split("\n")[:-1]
            vectors = np.load(os.path.join(self.directory, ENTITY_VECTORS))
        except FileNotFoundError as exc:
            raise UserError(f"shard file missing: {exc.filename}; run `ptmzoo prepare --entities` again") from None
        if len(names) != len(vectors) or len(names) != self.meta["entities"]["count"]:
            raise UserError(f"{self.directory}: the entity names and vectors do not match meta.json; "
                            "run `ptmzoo prepare --entities` again")
        return names, vectors

    def tokenizer(self):
        from .tokenizers import Tokenizer

        return Tokenizer.load(self.directory)
