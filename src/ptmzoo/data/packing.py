"""Pre-training sequences built from token shards.

Samples are addressed by ``(index, epoch)``. Everything random about a sample (the random next
segment of NSP, the masks of MLM) is drawn from generators seeded by that key, so a sample is
the same whatever the batch size, the number of processes or a resume in between -- and is
re-drawn in the next epoch (dynamic masking).

* ``PackedBlocks``: documents concatenated with a separator token between them and cut into
  blocks of exactly ``block_len`` tokens -- no padding at all (GPT-2's and RoBERTa's
  FULL-SENTENCES packing). Optional ``prefix``/``suffix`` tokens wrap each block ([CLS] ... [SEP]).
  With ``document_attention`` each sample also carries ``document_ids`` (tokens attend only
  within their document) and ``position_ids`` that restart at every document, so a packed row
  trains like separate sequences without the padding.
* ``SentencePairs``: BERT's next-sentence-prediction instances. Each document is cut into chunks
  of consecutive sentences filling the sequence; a chunk is split at a sentence boundary into
  segment A and its true continuation B, or (with probability ``random_next_prob``) B is taken
  from another document. With ``task="sop"`` (ALBERT's sentence-order prediction) B is always
  the true continuation and, with probability ``random_next_prob``, the two are swapped; with
  ``classes=3`` as well (StructBERT's sentence structural objective), B follows A (label 0),
  precedes it (1: the two swapped) or comes from another document (2), a third of the pairs each.

When the shards carry token marks (segmented corpora: word and entity boundaries), samples carry
them too as ``token_marks``, aligned with ``input_ids``; added special tokens are word starts.
Entity ids (ERNIE corpora, ``prepare --entities``) come along the same way as ``entity_ids``
(0 on added tokens). Both travel as the columns of one per-token array (``PerToken``), so that
cutting and joining a sample carries every one of them.
"""

from __future__ import annotations

import numpy as np

from .shards import WORD_START, ShardSplit

PAIR_SALT = 0x5EED  # separates the pair-building stream from the objectives' streams


def sample_rng(seed: int, epoch: int, index: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, salt])


class PerToken:
    """The per-token arrays of a split beside its tokens, as the columns of one [n, k] array per
    document: ``token_marks`` (segmented corpora) and ``entity_ids`` (ERNIE corpora)."""

    def __init__(self, split: ShardSplit):
        self.split = split
        self.columns = [(key, read, fill) for key, read, fill, present in (
            ("token_marks", split.doc_marks, WORD_START, split.marks is not None),
            ("entity_ids", split.doc_entities, 0, split.entities is not None)) if present]

    def __bool__(self) -> bool:
        return bool(self.columns)

    def doc(self, d: int) -> np.ndarray:
        if not self.columns:
            return np.zeros((int(self.split.doc_len[d]), 0), dtype=np.int64)
        return np.stack([read(d) for _, read, _ in self.columns], axis=1).astype(np.int64)

    def added(self, count: int = 1) -> np.ndarray:
        """Rows for ``count`` added tokens (specials, separators)."""
        return np.tile(np.asarray([[fill for _, _, fill in self.columns]], dtype=np.int64), (count, 1))

    def sample(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {key: rows[:, column] for column, (key, _, _) in enumerate(self.columns)}


class PackedBlocks:
    def __init__(self, split: ShardSplit, block_len: int, separator_id: int,
                 prefix: tuple[int, ...] = (), suffix: tuple[int, ...] = (), document_attention: bool = False):
        if block_len < 1:
            raise ValueError("block_len must be positive")
        self.split = split
        self.block_len = block_len
        self.separator_id = separator_id
        self.prefix = np.asarray(prefix, dtype=np.int64)
        self.suffix = np.asarray(suffix, dtype=np.int64)
        self.document_attention = document_attention
        self.per_token = PerToken(split)
        # Virtual stream: each document followed by one separator token.
        self.doc_virtual_start = np.concatenate([[0], np.cumsum(split.doc_len + 1)])
        self.num_blocks = int(self.doc_virtual_start[-1] // block_len)

    def __len__(self) -> int:
        return self.num_blocks

    def block(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Tokens of block ``index``, per token which document of the block it belongs to (0, 1,
        ...; a separator belongs to the document it ends), and the ``PerToken`` rows (or None)."""
        start = index * self.block_len
        return self.span(start, start + self.block_len)

    def span(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Positions [start, end) of the virtual stream, as ``block`` returns them."""
        doc = int(np.searchsorted(self.doc_virtual_start, start, side="right") - 1)
        marked = bool(self.per_token)
        pieces, owners, marks, pos = [], [], [], start
        while pos < end:
            offset = pos - self.doc_virtual_start[doc]
            take = self.split.doc(doc)[offset : offset + (end - pos)].astype(np.int64)
            if marked:
                marks.append(self.per_token.doc(doc)[offset : offset + len(take)])
            if pos + len(take) < end:  # reached the end of the document: its separator
                take = np.append(take, self.separator_id)
                if marked:
                    marks.append(self.per_token.added())
            pieces.append(take)
            owners.append(np.full(len(take), len(owners), dtype=np.int64))
            pos += len(take)
            doc += 1
        return np.concatenate(pieces), np.concatenate(owners), np.concatenate(marks) if marked else None

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        tokens, owners, marks = self.block(index)
        sample = {"input_ids": np.concatenate([self.prefix, tokens, self.suffix]), "index": index, "epoch": epoch}
        if marks is not None:
            sample.update(self.per_token.sample(np.concatenate([self.per_token.added(len(self.prefix)), marks,
                                                                self.per_token.added(len(self.suffix))])))
        if self.document_attention:
            owners = np.concatenate([np.zeros(len(self.prefix), dtype=np.int64), owners,
                                     np.full(len(self.suffix), owners[-1], dtype=np.int64)])
            starts = np.flatnonzero(np.diff(owners, prepend=-1))  # first token of each document
            sample["document_ids"] = owners
            sample["position_ids"] = np.arange(len(owners)) - np.repeat(starts, np.diff(np.append(starts, len(owners))))
        return sample


class SentencePairs:
    def __init__(self, split: ShardSplit, seq_len: int, cls_id: int, sep_id: int,
                 random_next_prob: float = 0.5, seed: int = 0, task: str = "nsp", classes: int = 2):
        if task not in ("nsp", "sop"):
            raise ValueError(f"unknown sentence-pair task {task!r}")
        if classes not in (2, 3) or (classes == 3 and task != "sop"):
            raise ValueError("three classes of pairs (next / previous / random) are a sentence-order task")
        self.task = task
        self.classes = classes
        self.split = split
        self.per_token = PerToken(split)
        self.max_tokens = seq_len - 3  # [CLS] A [SEP] B [SEP]
        if self.max_tokens < 2:
            raise ValueError("sequence length too short for sentence pairs")
        self.cls_id, self.sep_id = cls_id, sep_id
        self.random_next_prob = random_next_prob
        self.seed = seed
        self.chunks = self._build_chunks()
        if len(self.chunks) == 0:
            raise ValueError("no sentence-pair chunks")
        self.chunk_doc = self.chunks[:, 0]

    def _build_chunks(self) -> np.ndarray:
        """Rows (doc, start, end): runs of whole sentences of up to ``max_tokens`` tokens."""
        rows = []
        limit = self.max_tokens
        for doc in range(self.split.num_docs):
            length = int(self.split.doc_len[doc])
            starts = [int(x) for x in self.split.sentence_starts(doc)]
            chunk_start = 0
            for sent_start, sent_end in zip(starts, starts[1:] + [length]):
                if sent_end - chunk_start > limit and sent_start > chunk_start:
                    rows.append((doc, chunk_start, sent_start))  # close before this sentence
                    chunk_start = sent_start
                while sent_end - chunk_start > limit:  # a sentence longer than a sequence
                    rows.append((doc, chunk_start, chunk_start + limit))
                    chunk_start += limit
            if length > chunk_start:
                rows.append((doc, chunk_start, length))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.chunks)

    def _chunk_tokens(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens of a chunk, its inner sentence starts, and its ``PerToken`` rows ([n, 0] if none)."""
        doc, start, end = (int(x) for x in self.chunks[index])
        tokens = self.split.doc(doc)[start:end].astype(np.int64)
        sents = self.split.sentence_starts(doc) - start
        marks = self.per_token.doc(doc)[start:end]
        return tokens, sents[(sents > 0) & (sents < end - start)], marks

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        rng = sample_rng(self.seed, epoch, index, PAIR_SALT)
        tokens, boundaries, marks = self._chunk_tokens(index)
        if len(boundaries):
            split_at = int(boundaries[rng.integers(len(boundaries))])
        else:  # one sentence: split it at a random token
            split_at = int(rng.integers(1, len(tokens))) if len(tokens) > 1 else len(tokens)
        a, a_marks = tokens[:split_at], marks[:split_at]
        if self.classes == 3:  # 0: B follows A, 1: B precedes A (swapped), 2: B from another document
            label = int(rng.integers(3))
            label = 2 if split_at >= len(tokens) else label
        else:
            label = int(rng.random() < self.random_next_prob)
        if self.task == "sop" and label < 2:  # label 1: the two consecutive segments in swapped order
            b, b_marks = tokens[split_at:], marks[split_at:]
            label = label if len(b) > 0 else 0
        else:  # nsp label 1, sop label 2: B comes from another document
            label = label or int(split_at >= len(tokens))
            if label:
                b, b_marks = self._random_segment(rng, self.max_tokens - len(a), avoid_doc=int(self.chunk_doc[index]))
            else:
                b, b_marks = tokens[split_at:], marks[split_at:]
        keep_a, keep_b = self._truncate_pair(len(a), len(b), rng)
        a, a_marks, b, b_marks = a[keep_a], a_marks[keep_a], b[keep_b], b_marks[keep_b]
        if self.task == "sop" and label == 1:
            a, a_marks, b, b_marks = b, b_marks, a, a_marks
        ids = np.concatenate([[self.cls_id], a, [self.sep_id], b, [self.sep_id]]).astype(np.int64)
        types = np.zeros(len(ids), dtype=np.int64)
        types[len(a) + 2 :] = 1
        sample = {"input_ids": ids, "token_type_ids": types, f"{self.task}_labels": label,
                  "index": index, "epoch": epoch}
        if self.per_token:
            added = self.per_token.added()
            sample.update(self.per_token.sample(np.concatenate([added, a_marks, added, b_marks, added])))
        return sample

    def _random_segment(self, rng: np.random.Generator, want: int, avoid_doc: int):
        want = max(want, 1)
        for _ in range(10):
            other = int(rng.integers(len(self.chunks)))
            if self.chunk_doc[other] != avoid_doc:
                break
        tokens, boundaries, marks = self._chunk_tokens(other)
        starts = np.concatenate([[0], boundaries])
        start = int(starts[rng.integers(len(starts))])
        return tokens[start : start + want], marks[start : start + want]

    def _truncate_pair(self, len_a: int, len_b: int, rng: np.random.Generator) -> tuple[slice, slice]:
        """Trim the longer segment, one token at a time from a random end (as BERT does); returns
        the parts of A and B to keep."""
        a_lo, a_hi, b_lo, b_hi = 0, len_a, 0, len_b
        while (a_hi - a_lo) + (b_hi - b_lo) > self.max_tokens:
            if (a_hi - a_lo) > (b_hi - b_lo):
                if rng.random() < 0.5:
                    a_lo += 1
                else:
                    a_hi -= 1
            elif rng.random() < 0.5:
                b_lo += 1
            else:
                b_hi -= 1
        return slice(a_lo, a_hi), slice(b_lo, b_hi)
