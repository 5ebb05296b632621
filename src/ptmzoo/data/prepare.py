"""Corpus -> token shards, tokenized in parallel worker processes, streaming.

The reader streams documents in chunks; a bounded number of chunks is in flight in the worker
pool at any time (``Pool.imap`` would read the whole corpus ahead), and results are written in
corpus order, so the shards are identical for any number of workers. Every ``1/valid_fraction``-th
document (evenly spread) goes to the held-out ``valid`` split.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..io import atomic_directory, atomic_write_json
from .corpus import CorpusReader, sentence_starts
from .shards import FORMAT, FORMAT_VERSION, ShardWriter, token_dtype
from .tokenizers import Tokenizer

CHUNK_CHARS = 1 << 20  # characters of text sent to a worker at a time

_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = Tokenizer.load(tokenizer_dir)


def encode_documents(tokenizer: Tokenizer, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Token ids of each document and the token offsets where its sentences start."""
    results = []
    for text, (ids, offsets) in zip(texts, tokenizer.encode_with_offsets(texts)):
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            results.append((ids, np.zeros(0, dtype=np.int64)))
            continue
        # A sentence starts in the first token that ends after its first character (byte-level
        # BPE tokens carry the preceding space, so their start offset is before the sentence).
        token_char_ends = np.asarray([end for _, end in offsets], dtype=np.int64)
        char_starts = np.asarray(sentence_starts(text), dtype=np.int64)
        token_starts = np.unique(np.searchsorted(token_char_ends, char_starts, side="right"))
        token_starts = token_starts[token_starts < len(ids)]
        if len(token_starts) == 0 or token_starts[0] != 0:
            token_starts = np.concatenate([[0], token_starts])
        results.append((ids, token_starts))
    return results


def _encode_in_worker(texts: list[str]):
    assert _worker_tokenizer is not None
    return encode_documents(_worker_tokenizer, texts)


def _chunks(readers: list[CorpusReader]) -> Iterator[tuple[list[str], int]]:
    """Lists of documents of about CHUNK_CHARS characters, with the bytes read so far."""
    done_bytes = 0
    for reader in readers:
        chunk, size = [], 0
        for doc in reader:
            chunk.append(doc)
            size += len(doc)
            if size >= CHUNK_CHARS:
                yield chunk, done_bytes + reader.bytes_read
                chunk, size = [], 0
        done_bytes += reader.total_bytes
        if chunk:
            yield chunk, done_bytes


def _results_in_order(chunks, tokenizer: Tokenizer, tokenizer_dir: str, workers: int):
    if workers <= 1:
        for texts, position in chunks:
            yield encode_documents(tokenizer, texts), position
        return
    # fork where available: workers start at once and need no `if __name__ == "__main__"` guard
    # in the caller's script; they load their own tokenizer and keep its Rust threads off.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer_dir,)) as pool:
        pending: deque = deque()
        for texts, position in chunks:
            pending.append((pool.apply_async(_encode_in_worker, (texts,)), position))
            if len(pending) >= 2 * workers:
                result, pos = pending.popleft()
                yield result.get(), pos
        while pending:
            result, pos = pending.popleft()
            yield result.get(), pos


def prepare_corpus(
    inputs: list[str],
    tokenizer_path: str,
    out_dir: str,
    fmt: str = "auto",
    field: str = "text",
    docs: str = "auto",
    workers: int | None = None,
    valid_fraction: float = 0.01,
    shard_tokens: int = 100_000_000,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Tokenize ``inputs`` into a shard directory at ``out_dir``; returns its meta.json content."""
    if not inputs:
        raise UserError("no input files given; name at least one corpus file")
    if not 0 <= valid_fraction < 1:
        raise UserError("--valid-fraction must be in [0, 1)")
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise UserError(f"{out_dir} already exists and is not empty; choose another --out or pass --overwrite")
    readers = [CorpusReader(path, fmt, field, docs) for path in inputs]
    tokenizer = Tokenizer.load(tokenizer_path)
    dtype = token_dtype(tokenizer.vocab_size)
    workers = workers if workers is not None else max(1, min(os.cpu_count() or 1, 8))
    total_bytes = sum(r.total_bytes for r in readers)
    with atomic_directory(out_dir) as tmp:
        tokenizer.save(tmp)
        writers = {"train": ShardWriter(os.path.join(tmp, "train"), dtype, shard_tokens),
                   "valid": ShardWriter(os.path.join(tmp, "valid"), dtype, shard_tokens)}
        doc_index = 0
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare", disable=not progress)
        chunks = _chunks(readers)
        for results, position in _results_in_order(chunks, tokenizer, tmp, workers):
            for ids, sents in results:
                if len(ids) == 0:
                    continue
                held_out = math.floor((doc_index + 1) * valid_fraction) > math.floor(doc_index * valid_fraction)
                writers["valid" if held_out else "train"].add(ids, sents)
                doc_index += 1
            bar.update(position - bar.n)
        bar.close()
        splits = {name: writer.close() for name, writer in writers.items()}
        if splits["train"]["tokens"] == 0:
            raise UserError(f"no text found in {', '.join(inputs)}; the corpus is empty after tokenization")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dtype": dtype.name,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.describe(),
            "sources": [{"path": os.path.abspath(r.path), "format": r.format, "docs": r.doc_mode} for r in readers],
            "valid_fraction": valid_fraction,
            "splits": splits,
        }
        atomic_write_json(os.path.join(tmp, "meta.json"), meta)
    return meta


def summarize(meta: dict) -> str:
    parts = []
    for name, info in meta["splits"].items():
        parts.append(f"{name}: {info['docs']:,} documents, {info['tokens']:,} tokens in {len(info['shards'])} shard(s)")
    return "; ".join(parts)

