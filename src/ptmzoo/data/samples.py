"""The training samples of a pre-training run, built from what its objectives declare
(``Objective.samples``): one builder per kind, chosen from a table, never by family.

* ``blocks``: packed blocks with no padding (``packing.PackedBlocks``); an encoder's block is
  framed as ``[CLS] ... [SEP]``, a decoder's (and an encoder-decoder's, whose objectives frame their
  own source and target) is the raw stream;
* ``sentence_pairs``: ``[CLS] A [SEP] B [SEP]`` with NSP/SOP labels (``packing.SentencePairs``);
* ``parallel_pairs``: a sentence and its translation (``parallel.ParallelPairs``, XLM's TLM);
* ``stream``: contiguous segments in stream order (``stream.StreamSegments``).

A corpus that gives its tokens segment ids (XLM: the language of a monolingual corpus) has them
on every sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .packing import PackedBlocks, SentencePairs
from .parallel import ParallelPairs, WithLanguage
from .shards import ShardSplit
from .stream import StreamSegments


@dataclass
class SampleSettings:
    tokenizer: Any
    seq_len: int
    framed: bool  # encoders: [CLS] block [SEP]
    seed: int
    batch_size: int  # the global batch: the number of streams of the ``stream`` kind
    document_attention: bool = False
    segment_ids: tuple[int, ...] | None = None  # what the corpus gives its tokens (XLM: language ids)
    options: dict[str, Any] = field(default_factory=dict)  # the objective's ``sample_options``


def blocks(split: ShardSplit, s: SampleSettings):
    tok = s.tokenizer
    if s.framed:  # as the tokenizer's template frames one text: [CLS] ... [SEP] (XLNet: ... <sep> <cls>)
        if tok.cls_id is None or tok.sep_id is None:
            raise UserError("an encoder needs [CLS] and [SEP] tokens; train a wordpiece or char tokenizer")
        before, after = tok.frame()
        return PackedBlocks(split, s.seq_len - len(before) - len(after), tok.sep_id, tuple(before), tuple(after),
                            s.document_attention)
    return PackedBlocks(split, s.seq_len, tok.document_separator_id, document_attention=s.document_attention)


def sentence_pairs(split: ShardSplit, s: SampleSettings):
    return SentencePairs(split, s.seq_len, s.tokenizer.cls_id, s.tokenizer.sep_id, seed=s.seed, **s.options)


def parallel_pairs(split: ShardSplit, s: SampleSettings):
    if s.segment_ids is None or len(s.segment_ids) != 2:
        raise UserError("sentence pairs need a parallel corpus (`ptmzoo prepare --parallel --languages SRC,TGT`) "
                        "and a model with language embeddings")
    return ParallelPairs(split, s.seq_len, s.tokenizer.cls_id, s.tokenizer.sep_id, s.segment_ids)


def stream(split: ShardSplit, s: SampleSettings):
    return StreamSegments(split, s.seq_len, s.batch_size, s.tokenizer.document_separator_id)


BUILDERS: dict[str, Callable[[ShardSplit, SampleSettings], Any]] = {
    "blocks": blocks, "sentence_pairs": sentence_pairs, "parallel_pairs": parallel_pairs, "stream": stream}


def build_samples(kind: str, split: ShardSplit, settings: SampleSettings):
    """The dataset of ``kind`` over ``split`` (samples addressed by (index, epoch) keys)."""
    try:
        dataset = BUILDERS[kind](split, settings)
    except ValueError as exc:
        raise UserError(f"cannot build training sequences: {exc}") from None
    segments = settings.segment_ids
    if kind != "parallel_pairs" and segments is not None and len(segments) == 1:
        dataset = WithLanguage(dataset, segments[0])
    return dataset
