"""Corpus -> token shards, tokenized in parallel worker processes, streaming.

The reader streams documents in chunks; one chunk per worker process is in flight at any time
(``Pool.imap`` would read the whole corpus ahead), and results are written in corpus order, so the shards are identical for any number of workers. Every ``1/valid_fraction``-th
document (evenly spread) goes to the held-out ``valid`` split.

A segmented corpus (``segmentation``) also gets per-token marks (``shards.WORD_START``, ...):
"spaces" reads words separated by spaces, "tagged" reads ``word/TAG`` tokens as in the People's
Daily corpus (tags dropped; ``entity_tags`` such as ``nr/ns/nt`` become entity spans), "jieba"
segments plain text with jieba. Whole-word, knowledge (ERNIE) and span (SpanBERT) masking read
the marks; the tokenizer sees the words joined by single spaces.

With ``entities`` (a word2vec-format file of entity vectors, ERNIE-THU) the mentions of those
entities are linked by name (``knowledge.linking``: the tagged entity spans of a tagged corpus,
else a greedy longest match of the names) and each mention's entity id is stored at its first
token (``shards.ENTITIES_SUFFIX``); the names and vectors are kept beside the shards.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import re
import signal
from collections import deque
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..io import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    sigterm_interrupts,
)
from ..knowledge.linking import EntityLinker, token_entities
from ..knowledge.vectors import read_vectors
from .corpus import CorpusReader, sentence_starts
from .shards import (
    ENTITY,
    ENTITY_NAMES,
    ENTITY_START,
    ENTITY_VECTORS,
    FORMAT,
    FORMAT_VERSION,
    WORD_START,
    ShardWriter,
    token_dtype,
)
from .tokenizers import Tokenizer

CHUNK_CHARS = 1 << 20  # characters of text sent to a worker at a time
# A longer document is tokenized in pieces of at most this many characters, so that the tokenizer's
# per-token objects stay small (one 50 MB line tokenized whole held 8-18 GB); cut at the last space
# or after the last punctuation mark in the second half of the piece, anywhere when it has neither.
PIECE_CHARS = 1 << 18
_PIECE_CUT = re.compile(r"(?<=\S) (?=\S)|(?<=[。！？；，、.!?;,:])(?=\S)")
SEGMENTATIONS = ("none", "spaces", "tagged", "jieba")
DEFAULT_ENTITY_TAGS = ("nr", "ns", "nt")  # person, place, organisation (People's Daily tag set)

_worker_tokenizer: Tokenizer | None = None
_worker_segmenter: Segmenter | None = None
_worker_linker: EntityLinker | None = None


class Segmenter:
    """Turns a document of a segmented corpus into plain text, word character spans and entity
    character spans."""

    def __init__(self, mode: str, entity_tags: tuple[str, ...] = DEFAULT_ENTITY_TAGS):
        if mode not in SEGMENTATIONS:
            raise UserError(f"unknown segmentation '{mode}' (choose from {', '.join(SEGMENTATIONS)})")
        if mode == "jieba":
            try:
                import jieba  # noqa: F401
            except ImportError:
                raise UserError("--segmentation jieba needs the jieba package (pip install jieba), or give a "
                                "pre-segmented corpus with --segmentation spaces/tagged") from None
        self.mode = mode
        self.entity_tags = set(entity_tags)

    def __call__(self, text: str) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
        if self.mode == "jieba":
            import jieba

            words, tags = [w for w in jieba.lcut(text) if w.strip()], None
        elif self.mode == "spaces":
            words, tags = text.split(), None
        else:
            words, tags = self._tagged(text)
        spans, pos = [], 0
        for word in words:
            spans.append((pos, pos + len(word)))
            pos += len(word) + 1
        entities = []
        for first, last in (tags or []):
            entities.append((spans[first][0], spans[last][1]))
        return " ".join(words), spans, entities

    def _tagged(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        """Words of ``word/TAG`` tokens and the (first, last) word of each entity. Consecutive
        ``nr`` words are one person (the corpus splits surname and given name); a bracketed
        compound ``[...]TAG`` with an entity tag is one entity."""
        words, entities = [], []
        group_start = None
        for token in text.split():
            if token.startswith("[") and len(token) > 1:
                group_start, token = len(words), token[1:]
            group_tag = None
            if "]" in token and group_start is not None:
                token, group_tag = token.rsplit("]", 1)
            word, _, tag = token.rpartition("/")
            if not word:  # no tag: keep the token as a word
                word, tag = token, ""
            index = len(words)
            words.append(word)
            if tag in self.entity_tags:
                previous = entities[-1] if entities else None
                if tag == "nr" and previous and previous[1] == index - 1 and previous[2] == "nr":
                    entities[-1] = (previous[0], index, "nr")
                else:
                    entities.append((index, index, tag))
            if group_tag is not None:
                if group_tag in self.entity_tags:  # the compound replaces the entities inside it
                    entities = [e for e in entities if e[0] < group_start] + [(group_start, index, group_tag)]
                group_start = None
        return words, [(first, last) for first, last, _ in entities]


def token_marks(offsets: np.ndarray, words: list[tuple[int, int]], entities: list[tuple[int, int]]) -> np.ndarray:
    """Per-token marks from character spans: a token belongs to the word (entity) holding its last
    character (byte-level BPE tokens start with the space before a word)."""
    last = offsets[:, 1] - 1
    word_starts = np.asarray([w[0] for w in words], dtype=np.int64)
    word_of = np.searchsorted(word_starts, last, side="right") - 1
    marks = np.where(np.diff(word_of, prepend=-2) != 0, WORD_START, 0).astype(np.uint8)
    for begin, end in entities:
        inside = np.flatnonzero((last >= begin) & (last < end))
        if len(inside):
            marks[inside] |= ENTITY
            marks[inside[0]] |= ENTITY_START
    return marks


def _init_worker(tokenizer_dir: str, segmenter: Segmenter | None = None, linker: EntityLinker | None = None) -> None:
    global _worker_tokenizer, _worker_segmenter, _worker_linker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends the pool
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = Tokenizer.load(tokenizer_dir)
    _worker_segmenter = segmenter
    _worker_linker = linker


def piece_starts(text: str) -> list[int]:
    """Where the pieces of ``text`` that are tokenized separately start (``[0]`` for a short text)."""
    size, starts = PIECE_CHARS, [0]
    while len(text) - starts[-1] > size:
        low, high = starts[-1] + size // 2, starts[-1] + size
        cuts = [m.start() for m in _PIECE_CUT.finditer(text, low, high)]
        starts.append(cuts[-1] if cuts else high)
    return starts


def encode_in_pieces(tokenizer: Tokenizer, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Token ids (int32) and character offsets ([n, 2] int32) of each text without special tokens;
    long texts are encoded piece by piece and turned into arrays at once, so the tokenizer never
    holds more than about PIECE_CHARS characters' worth of tokens as Python objects."""
    pieces = [(doc, start, text[start:end]) for doc, text in enumerate(texts)
              for start, end in itertools.pairwise(piece_starts(text) + [len(text)])]
    parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in texts]

    def encode(batch: list[tuple[int, int, str]]) -> None:
        for (doc, start, _), (ids, offsets) in zip(batch, tokenizer.encode_with_offsets([p[2] for p in batch])):
            parts[doc].append((np.asarray(ids, dtype=np.int32), np.asarray(offsets, dtype=np.int32).reshape(-1, 2) + start))

    batch, size = [], 0
    for piece in pieces:
        if batch and size + len(piece[2]) > PIECE_CHARS:
            encode(batch)
            batch, size = [], 0
        batch.append(piece)
        size += len(piece[2])
    if batch:
        encode(batch)
    empty = (np.zeros(0, dtype=np.int32), np.zeros((0, 2), dtype=np.int32))
    return [tuple(np.concatenate(a) for a in zip(*doc_parts)) if doc_parts else empty for doc_parts in parts]


def encode_documents(tokenizer: Tokenizer, texts: list[str], segmenter: Segmenter | None = None,
                     linker: EntityLinker | None = None) -> list[tuple]:
    """Token ids of each document, the token offsets where its sentences start and, with a
    ``segmenter``, the token marks (else None), and with a ``linker`` the entity id per token
    (else None): mentions are the tagged entity spans of a tagged corpus, else longest matches."""
    segmented = [segmenter(text) for text in texts] if segmenter is not None else None
    if segmented is not None:
        texts = [plain for plain, _, _ in segmented]
    tagged = segmenter is not None and segmenter.mode == "tagged" and bool(segmenter.entity_tags)
    results = []
    for doc, (text, (ids, offsets)) in enumerate(zip(texts, encode_in_pieces(tokenizer, texts))):
        marks = entity_ids = None
        if segmented is not None and len(ids):
            _, words, entities = segmented[doc]
            marks = token_marks(offsets.astype(np.int64), words, entities)
        if linker is not None:
            mentions = linker.link_spans(text, segmented[doc][2]) if tagged else linker.longest_match(text)
            entity_ids = token_entities(offsets.astype(np.int64), mentions)
        if len(ids) == 0:
            results.append((ids, np.zeros(0, dtype=np.int64), marks, entity_ids))
            continue
        # A sentence starts in the first token that ends after its first character (byte-level
        # BPE tokens carry the preceding space, so their start offset is before the sentence).
        token_char_ends = offsets[:, 1]
        char_starts = np.asarray(sentence_starts(text), dtype=np.int64)
        token_starts = np.unique(np.searchsorted(token_char_ends, char_starts, side="right"))
        token_starts = token_starts[token_starts < len(ids)]
        if len(token_starts) == 0 or token_starts[0] != 0:
            token_starts = np.concatenate([[0], token_starts])
        results.append((ids, token_starts, marks, entity_ids))
    return results


def _encode_in_worker(texts: list[str]):
    assert _worker_tokenizer is not None
    return encode_documents(_worker_tokenizer, texts, _worker_segmenter, _worker_linker)


def _worker_loop(conn, tokenizer_dir: str, segmenter: Segmenter | None, linker: EntityLinker | None) -> None:
    """One worker process: encode each list of texts it receives until the parent closes the pipe."""
    _init_worker(tokenizer_dir, segmenter, linker)
    while True:
        try:
            texts = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", _encode_in_worker(texts)))
        except Exception as error:  # noqa: BLE001 -- the parent re-raises it: it owns the user-facing message
            conn.send(("error", error))


def _worker_died(process) -> UserError:
    process.join(1)
    return UserError(f"a prepare worker process died (exit code {process.exitcode}; -9 is usually out of memory); "
                     "run again with --workers 1, or with fewer workers")


def _send(conn, process, texts: list[str]) -> None:
    try:
        conn.send(texts)
    except OSError:  # a broken pipe: the worker is gone
        raise _worker_died(process) from None


def _received(conn, process) -> list[tuple]:
    try:
        status, value = conn.recv()
    except (EOFError, OSError):
        raise _worker_died(process) from None
    if status == "error":
        raise value
    return value


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


def _results_in_order(chunks, tokenizer: Tokenizer, tokenizer_dir: str, workers: int,
                      segmenter: Segmenter | None = None, linker: EntityLinker | None = None):
    if workers <= 1:
        for texts, position in chunks:
            yield encode_documents(tokenizer, texts, segmenter, linker), position
        return
    # Our own processes rather than multiprocessing.Pool: Pool.terminate() ends workers with SIGTERM,
    # which a worker forked a moment earlier loses (its handler is reset after the signal came), and
    # the parent then waits for it forever. Here an early exit SIGKILLs workers that hold nothing.
    # Fork where available: workers start at once and need no `if __name__ == "__main__"` guard in
    # the caller's script; they load their own tokenizer and keep its Rust threads off.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    conns, processes, finished = [], [], False
    try:
        for _ in range(workers):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(target=_worker_loop, args=(child_end, tokenizer_dir, segmenter, linker),
                                  daemon=True, name="ptmzoo-prepare")
            process.start()
            child_end.close()
            conns.append(parent_end)
            processes.append(process)
        # Chunk k goes to worker k % workers, one chunk in flight per worker, so results come back in
        # corpus order; a worker gets its next chunk only after its last result is read (two full
        # pipes, each side blocked on sending, would deadlock).
        positions: deque = deque()
        sent = 0
        for texts, position in chunks:
            worker = sent % workers
            result = _received(conns[worker], processes[worker]) if sent >= workers else None
            _send(conns[worker], processes[worker], texts)
            positions.append(position)
            sent += 1
            if result is not None:
                yield result, positions.popleft()
        for k in range(max(0, sent - workers), sent):
            yield _received(conns[k % workers], processes[k % workers]), positions.popleft()
        finished = True
    finally:
        for conn in conns:
            conn.close()  # an idle worker reads EOF and returns
        for process in processes:
            if not finished:
                process.kill()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


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
    segmentation: str = "none",
    entity_tags: tuple[str, ...] = DEFAULT_ENTITY_TAGS,
    language: str | None = None,
    entities: str | None = None,
) -> dict:
    """Tokenize ``inputs`` into a shard directory at ``out_dir``; returns its meta.json content.
    With a ``segmentation`` other than "none", word and entity marks are stored per token; with
    ``entities`` (a word2vec-format vector file) the id of each linked entity mention."""
    if not inputs:
        raise UserError("no input files given; name at least one corpus file")
    if not 0 <= valid_fraction < 1:
        raise UserError("--valid-fraction must be in [0, 1)")
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise UserError(f"{out_dir} already exists and is not empty; choose another --out or pass --overwrite")
    segmenter = Segmenter(segmentation, tuple(entity_tags)) if segmentation != "none" else None
    entity_names, entity_vectors = read_vectors(entities, "entity vector file") if entities else (None, None)
    linker = EntityLinker(entity_names) if entity_names else None
    entity_dtype = token_dtype(len(entity_names) + 1) if entity_names else None
    readers = [CorpusReader(path, fmt, field, docs) for path in inputs]
    tokenizer = Tokenizer.load(tokenizer_path)
    dtype = token_dtype(tokenizer.vocab_size)
    workers = workers if workers is not None else max(1, min(os.cpu_count() or 1, 8))
    total_bytes = sum(r.total_bytes for r in readers)
    with sigterm_interrupts(), atomic_directory(out_dir) as tmp:
        tokenizer.save(tmp)
        marked = segmenter is not None
        writers = {name: ShardWriter(os.path.join(tmp, name), dtype, shard_tokens, marked, entity_dtype)
                   for name in ("train", "valid")}
        doc_index = linked = 0
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare", disable=not progress)
        chunks = _chunks(readers)
        for results, position in _results_in_order(chunks, tokenizer, tmp, workers, segmenter, linker):
            for ids, sents, marks, entity_ids in results:
                if len(ids) == 0:
                    continue
                held_out = math.floor((doc_index + 1) * valid_fraction) > math.floor(doc_index * valid_fraction)
                writers["valid" if held_out else "train"].add(ids, sents, marks, entity_ids)
                doc_index += 1
                linked += int(np.count_nonzero(entity_ids)) if entity_ids is not None else 0
            bar.update(position - bar.n)
        bar.close()
        splits = {name: writer.close() for name, writer in writers.items()}
        if splits["train"]["tokens"] == 0:
            raise UserError(f"no text found in {', '.join(inputs)}; the corpus is empty after tokenization")
        if entity_names and not linked:
            raise UserError(f"no entity of {entities} is mentioned in the corpus: names must equal the mention text "
                            "(tagged spans: the words joined without spaces or with _); check the names")
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
        if language:  # XLM: the language id every token of this monolingual stream carries
            meta["language"] = language
        if marked:
            meta["token_marks"] = True
            meta["segmentation"] = {"mode": segmentation, "entity_tags": list(entity_tags)}
        if entity_names:
            tagged = segmentation == "tagged" and bool(entity_tags)
            meta["entities"] = {"count": len(entity_names), "dim": int(entity_vectors.shape[1]),
                                "dtype": entity_dtype.name, "source": os.path.abspath(entities),
                                "linking": "entity_tags" if tagged else "longest_match", "mentions": linked}
            atomic_write_text(os.path.join(tmp, ENTITY_NAMES), "".join(name + "\n" for name in entity_names))
            np.save(os.path.join(tmp, ENTITY_VECTORS), entity_vectors)
        atomic_write_json(os.path.join(tmp, "meta.json"), meta)
    return meta


def summarize(meta: dict) -> str:
    parts = []
    for name, info in meta["splits"].items():
        parts.append(f"{name}: {info['docs']:,} documents, {info['tokens']:,} tokens in {len(info['shards'])} shard(s)")
    if meta.get("entities"):
        info = meta["entities"]
        parts.append(f"{info['mentions']:,} mentions linked to {info['count']:,} entities ({info['linking']})")
    return "; ".join(parts)

