"""Contiguous streams for models that carry state across batches (BPTT for LSTMs, Transformer-XL's
segment-level recurrence).

The split's documents, each followed by a separator, form one token stream, cut into ``rows``
equal parts -- one per row of the global batch. Sample ``t * rows + row`` is segment ``t`` of part
``row``: ``input_ids`` are its ``seq_len`` tokens, ``target_ids`` the tokens one position later
(so the last target is the first token of the next segment), ``stream_row`` says which part it
is and ``stream_segment`` which segment of it (0: the part starts, a carried state starts afresh). Read in order (``StepSampler(shuffle=False)`` with a global batch of ``rows``), optimizer step
``s`` gives every row segment ``s mod segments`` of its part: each row continues exactly where it
stopped one step before, on any number of processes, and a resumed run continues at its step.
``stream_segment`` is ``s mod segments``: segment 0 starts the part again (a carried state resets).

With ``lengths`` (``VariableLengths``, AWD-LSTM's random BPTT) segment ``t`` of every row has the
length drawn for step ``t`` of the epoch instead of ``seq_len``: all rows of a step share it, so a
batch stays rectangular, and the lengths are a function of (seed, epoch), so any step is found
without reading those before it and a resume stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .packing import PackedBlocks
from .shards import ShardSplit


@dataclass(frozen=True)
class VariableLengths:
    """Merity et al. (2018, sec. 4.1): each segment's length is drawn from N(seq_len, std), or with
    probability ``short_probability`` from N(seq_len / 2, std), and is at least ``min_length``.

    An epoch draws one length per segment and scales all of them by one factor so that they add up
    to ``segments * seq_len``: every epoch covers its part in the same number of steps (which the
    step-addressed sampler needs), with the paper's spread of lengths around a mean of ``seq_len``."""

    seed: int = 0
    short_probability: float = 0.05
    std: float = 5.0
    min_length: int = 5

    def boundaries(self, seq_len: int, segments: int, epoch: int) -> np.ndarray:
        """Segment starts of an epoch and the end of the last one ([segments + 1], from 0 to
        ``segments * seq_len``, strictly increasing)."""
        rng = np.random.default_rng([self.seed, epoch, 7919])
        centre = np.where(rng.random(segments) < self.short_probability, seq_len / 2, seq_len)
        drawn = np.maximum(self.min_length, rng.normal(centre, self.std))
        total = segments * seq_len
        ends = np.round(np.cumsum(drawn) * (total / drawn.sum())).astype(np.int64)
        # at least one token per segment (scaled lengths of min_length >= 1 rarely need it)
        steps = np.arange(1, segments + 1)
        ends = np.minimum(np.maximum.accumulate(np.maximum(ends, steps) - steps) + steps, total - segments + steps)
        return np.concatenate([[0], ends])


class StreamSegments:
    def __init__(self, split: ShardSplit, seq_len: int, rows: int, separator_id: int,
                 lengths: VariableLengths | None = None):
        if seq_len < 1 or rows < 1:
            raise ValueError("the segment length and the number of rows must be positive")
        self.stream = PackedBlocks(split, seq_len, separator_id)  # its virtual stream of documents
        total = int(self.stream.doc_virtual_start[-1])
        self.seq_len, self.rows = seq_len, rows
        self.part_len = total // rows
        self.segments = max(0, (self.part_len - 1) // seq_len)  # each segment also needs its next token
        if self.segments == 0:
            raise ValueError(f"a corpus of {total} tokens in {rows} rows is shorter than one segment of "
                             f"{seq_len} tokens per row")
        self.lengths = lengths
        self._epoch, self._boundaries = -1, None

    def bounds(self, segment: int, epoch: int) -> tuple[int, int]:
        """Start and end (offsets in a row's part) of ``segment`` in ``epoch``."""
        if self.lengths is None:
            return segment * self.seq_len, (segment + 1) * self.seq_len
        if epoch != self._epoch:
            self._boundaries = self.lengths.boundaries(self.seq_len, self.segments, epoch)
            self._epoch = epoch
        return int(self._boundaries[segment]), int(self._boundaries[segment + 1])

    def __len__(self) -> int:
        return self.segments * self.rows

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        segment, row = divmod(index, self.rows)
        begin, end = self.bounds(segment, epoch)
        start = row * self.part_len + begin
        tokens, _, _ = self.stream.span(start, start + end - begin + 1)
        return {"input_ids": tokens[:-1], "target_ids": tokens[1:], "stream_row": row, "stream_segment": segment,
                "index": index, "epoch": epoch}
