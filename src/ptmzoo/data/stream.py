"""Contiguous streams for models that carry state across batches (BPTT for LSTMs, Transformer-XL's
segment-level recurrence).

The split's documents, each followed by a separator, form one token stream, cut into ``rows``
equal parts -- one per row of the global batch. Sample ``t * rows + row`` is segment ``t`` of part
``row``: ``input_ids`` are its ``seq_len`` tokens, ``target_ids`` the tokens one position later
(so the last target is the first token of the next segment), ``stream_row`` says which part it
is and ``stream_segment`` which segment of it (0: the part starts, a carried state starts afresh). Read in order (``StepSampler(shuffle=False)`` with a global batch of ``rows``), optimizer step
``s`` gives every row segment ``s mod segments`` of its part: each row continues exactly where it
stopped one step before, on any number of processes, and a resumed run continues at its step.
"""

from __future__ import annotations

from .packing import PackedBlocks
from .shards import ShardSplit


class StreamSegments:
    def __init__(self, split: ShardSplit, seq_len: int, rows: int, separator_id: int):
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

    def __len__(self) -> int:
        return self.segments * self.rows

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        segment, row = divmod(index, self.rows)
        start = row * self.part_len + segment * self.seq_len
        tokens, _, _ = self.stream.span(start, start + self.seq_len + 1)
        return {"input_ids": tokens[:-1], "target_ids": tokens[1:], "stream_row": row, "stream_segment": segment,
                "index": index, "epoch": epoch}
