"""What every fine-tuning task shares: its options, the task interface, padding and batching.

A task has the same shape as a pre-training objective: ``read`` rows from a file, ``encode``
them into samples (token ids and targets), ``collate`` samples into a batch, a registered
``head`` with its loss, ``predict`` (raw model outputs per row) and ``evaluate`` (metrics of
those outputs against the gold rows). ``meta`` is what the checkpoint stores -- the label
vocabulary and the options -- so that ``ptmzoo evaluate`` and ``ptmzoo predict`` rebuild the
exact encoding from the checkpoint alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..config import Config
from ..data.derived import add_derived_inputs
from ..errors import UserError
from ..io import atomic_write_text
from ..models.model import Head, unwrap
from .gpt_input import (
    AUX_LM_HEAD,
    AuxiliaryLMHead,
    GPTInputs,
    lm_labels,
    resize_token_embeddings,
)
from .tables import read_table

POOLINGS = ("cls", "last", "mean", "max", "concat")  # concat: ULMFiT's [last; max; mean]
SCHEMES = ("auto", "bio", "iob1", "bioes")
LANGUAGES = ("auto", "en", "zh")
TARGET_KINDS = ("label", "text", "entities")


@dataclass
class TaskOptions(Config):
    """Options of every task in one place (each task reads the fields it needs), so that one
    ``FinetuneConfig.options`` and one set of CLI flags serve all tasks."""

    text_column: str = "text"  # classification: the text; QA: the question; multiple choice: the context
    text_pair_column: str | None = None
    label_column: str = "label"
    max_length: int = 128
    pooling: str | None = None  # cls | last | mean; default: cls for encoders, last for decoders
    label_separator: str = ","  # multi-label: labels in one TSV/CSV cell, e.g. "sports,politics"
    # token classification
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    scheme: str = "auto"  # tag scheme of the files: bio (IOB2), iob1 or bioes
    crf: bool = False
    # extractive QA
    doc_stride: int | None = None  # tokens between window starts (default: half a window)
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    language: str = "auto"  # en: SQuAD normalisation; zh: CMRC2018 character level; auto: by the text
    # multiple choice
    choices_column: str = "choices"  # a column holding a list, or comma-separated columns (one choice each)
    # GPT-1 fine-tuning (tasks/gpt_input.py): decoder checkpoints
    gpt_input: bool = False  # <start> a <delim> b <extract> inputs; the extract token's state is pooled
    both_orders: bool = False  # sentence pairs (similarity): encode a+b and b+a, sum the two representations
    aux_lm_weight: float = 0.0  # lambda: the LM loss on the same inputs, weighted, added to the task loss
    aux_lm_decay: float = 1.0  # SiATL: lambda is multiplied by this every epoch (exponential decay; 1: constant)
    # translation (text-to-text generation)
    source_column: str = "source"
    target_column: str = "target"
    num_beams: int = 4  # beam search when predicting
    label_smoothing: float = 0.1  # eps of the label-smoothed training loss (Vaswani et al.)
    # text-to-text (tasks/text2text.py): inputs rendered as text, targets generated as text
    target_kind: str = "label"  # label: the label's name; text: --target-column; entities: NER as "TYPE: words; ..."
    prefix: str = ""  # the task prefix before the input, e.g. "sst2"
    field_names: str | None = None  # names before each text, e.g. "premise,hypothesis"; "none": no names
    label_names: str | None = None  # label -> target text: "0=negative,1=positive", "negative,positive" or a file
    constrained: bool = False  # decode only the label names (a prefix tree of their tokens)

    def validate(self) -> None:
        if self.max_length < 4:
            raise UserError("--max-length must be at least 4")
        if self.pooling not in (None, *POOLINGS):
            raise UserError(f"unknown pooling '{self.pooling}' (choose from {', '.join(POOLINGS)})")
        if self.scheme not in SCHEMES:
            raise UserError(f"unknown tag scheme '{self.scheme}' (choose from {', '.join(SCHEMES)})")
        if self.language not in LANGUAGES:
            raise UserError(f"unknown language '{self.language}' (choose from {', '.join(LANGUAGES)})")
        for name in ("max_query_length", "max_answer_length", "n_best"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.num_beams < 1 or not 0 <= self.label_smoothing < 1:
            raise UserError("--num-beams must be at least 1 and --label-smoothing in [0, 1)")
        if self.doc_stride is not None and self.doc_stride < 1:
            raise UserError("--doc-stride must be at least 1")
        if self.aux_lm_weight < 0:
            raise UserError("--aux-lm-weight must not be negative")
        if not 0 < self.aux_lm_decay <= 1:
            raise UserError("--aux-lm-decay must be in (0, 1] (1: a constant weight)")
        if self.both_orders and not self.text_pair_column:
            raise UserError("--both-orders encodes sentence pairs; give --text-pair-column")
        if self.target_kind not in TARGET_KINDS:
            raise UserError(f"unknown target kind '{self.target_kind}' (choose from {', '.join(TARGET_KINDS)})")
        if self.constrained and self.target_kind != "label":
            raise UserError("--constrained decodes only the label names; it needs --target-kind label")


def label_vocabulary(values) -> list[str]:
    """Sorted label names; numerically when every label is a number ("2" after "1", not "10")."""
    names = sorted({str(v) for v in values})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


class ListDataset:
    """Samples addressed by (index, epoch) keys, like the pre-training datasets."""

    def __init__(self, samples: list[dict]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        return self.samples[index]


def pad(rows: list[list], value, dtype=torch.long) -> torch.Tensor:
    """Right-pad lists to one length."""
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


def pad_groups(groups: list[list[list]], value, dtype=torch.long) -> torch.Tensor:
    """Right-pad groups of lists (e.g. the answers of each question) to [batch, group, length];
    a missing group member is all padding."""
    out = torch.full((len(groups), max(map(len, groups)), max(len(r) for g in groups for r in g)), value, dtype=dtype)
    for i, group in enumerate(groups):
        for j, row in enumerate(group):
            out[i, j, : len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


class SpecialTokens:
    """Where the tokenizer's template puts its special tokens around one text or a pair.

    Tagging and QA build their inputs from pieces (words, windows of a context), so they need
    the template without a text: read once from the encoding of a tiny text or pair.
    """

    def __init__(self, tokenizer):
        backend = tokenizer.backend
        single, pair = backend.encode("a"), backend.encode("a", "b")
        self.single = self._split(single, 1)
        self.pair = self._split(pair, 2)

    @staticmethod
    def _split(encoding, segments: int) -> list[tuple[list[int], list[int]]]:
        """The special ids (and type ids) before, between and after the text segments, and the
        type id of each segment's own tokens."""
        parts, current, segment_types = [], ([], []), []
        previous = None
        for token_id, type_id, seq in zip(encoding.ids, encoding.type_ids, encoding.sequence_ids):
            if seq is None:
                current[0].append(token_id)
                current[1].append(type_id)
            elif seq != previous:
                parts.append(current)
                current = ([], [])
                segment_types.append(type_id)
            previous = seq if seq is not None else previous
        parts.append(current)
        if len(parts) != segments + 1:
            raise UserError("cannot read the special-token template of this tokenizer")
        return list(zip(parts, segment_types + [None]))

    def count(self, segments: int = 1) -> int:
        parts = self.single if segments == 1 else self.pair
        return sum(len(ids) for (ids, _), _ in parts)

    def build(self, *segments: list[int]) -> tuple[list[int], list[int], list[int]]:
        """ids, type ids, and the position of each segment's first token."""
        parts = self.single if len(segments) == 1 else self.pair
        ids: list[int] = []
        types: list[int] = []
        starts: list[int] = []
        for ((special, special_types), segment_type), segment in zip(parts, list(segments) + [None]):
            ids += special
            types += special_types
            if segment is not None:
                starts.append(len(ids))
                ids += segment
                types += [segment_type] * len(segment)
        return ids, types, starts


class Task:
    """The interface of a fine-tuning task; subclasses fill in the task-specific parts."""

    name: ClassVar[str]
    head: ClassVar[type[Head]]
    metric_names: ClassVar[tuple[str, ...]]  # dev metrics that can select the best checkpoint; the first is the default
    prediction_suffix: ClassVar[str] = ".tsv"

    def __init__(self, options: TaskOptions, tokenizer, labels: list[str], max_positions: int | None):
        self.options = options
        self.derived_inputs: dict[str, dict] = {}  # what the backbone derives from the ids (set by add_head)
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.label_ids = {name: i for i, name in enumerate(self.labels)}
        # max_positions: the model's longest input (None: any length, e.g. an LSTM)
        self.max_length = options.max_length if max_positions is None else min(options.max_length, max_positions)
        if tokenizer.pad_id is None and tokenizer.document_separator_id is None:
            raise UserError("the tokenizer has no padding token")
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.document_separator_id

    @property
    def head_name(self) -> str:
        return self.name

    # ---- data ------------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str, options: TaskOptions, fmt: str = "auto", columns: list[str] | None = None) -> list[dict]:
        return read_table(path, fmt, columns)

    @classmethod
    def infer_labels(cls, rows: list[dict], options: TaskOptions, path: str) -> list[str]:
        """The label vocabulary of the training rows (stored in the checkpoint)."""
        return []

    def has_labels(self, rows: list[dict]) -> bool:
        return self.options.label_column in rows[0]

    def encode(self, rows: list[dict], path: str, with_labels: bool = True) -> list[dict]:
        raise NotImplementedError

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        """Padded inputs ([batch, group, length] when each sample is a group of sequences); tasks
        add their targets."""
        ids = [s["input_ids"] for s in samples]
        grouped = isinstance(ids[0][0], list)
        padded = pad_groups if grouped else pad
        batch = {"input_ids": padded(ids, self.pad_id),
                 "attention_mask": padded([[[1] * len(r) for r in i] if grouped else [1] * len(i) for i in ids], 0),
                 "token_type_ids": padded([s["token_type_ids"] for s in samples], 0)}
        if self.options.aux_lm_weight > 0:
            batch["lm_labels"] = lm_labels(batch["input_ids"], batch["attention_mask"])
        return add_derived_inputs(batch, self.derived_inputs, self.tokenizer, as_tensors=True)

    # ---- model ------------------------------------------------------------------------------------
    def head_options(self, backbone) -> dict[str, Any]:
        return {}

    def default_pooling(self, backbone) -> str:
        """--pooling, else [CLS] for encoders and the last token for decoders and GPT-1 inputs
        (the extract token, the only one that has read the whole input)."""
        return self.options.pooling or ("last" if backbone.causal or self.options.gpt_input else "cls")

    def gpt_inputs(self) -> GPTInputs | None:
        """GPT-1's marker tokens (added to the tokenizer when missing), with --gpt-input."""
        if not self.options.gpt_input:
            return None
        if not hasattr(self, "_gpt_inputs"):
            self._gpt_inputs = GPTInputs(self.tokenizer, self.max_length)
        return self._gpt_inputs

    def add_head(self, model) -> None:
        self.derived_inputs = model.backbone.derived_inputs  # ELMo's characters: added by collate
        if self.options.gpt_input:  # room in the embedding matrix for the marker tokens
            self.gpt_inputs()
            resize_token_embeddings(model.backbone, self.tokenizer.vocab_size)
        model.add_head(self.head_name, self.head, **self.head_options(model.backbone))
        if self.options.aux_lm_weight > 0:  # after resizing: the LM head is tied to the embeddings
            model.add_head(AUX_LM_HEAD, AuxiliaryLMHead, weight=self.options.aux_lm_weight)

    @torch.no_grad()
    def batch_logits(self, model, samples: list[dict], batch_size: int, device) -> Iterator[tuple[list[dict], dict, torch.Tensor]]:
        """(samples, batch, head logits on the CPU as float32) for consecutive batches, in eval mode."""
        was_training = model.training
        model.eval()
        self.derived_inputs = unwrap(model).backbone.derived_inputs
        try:
            for start in range(0, len(samples), batch_size):
                chunk = samples[start : start + batch_size]
                batch = self.collate(chunk)
                inputs = {k: v.to(device) for k, v in unwrap(model).select_inputs(batch).items()}
                logits = model(**inputs).head_logits[self.head_name]
                yield chunk, batch, logits.float().cpu()
        finally:
            model.train(was_training)

    def schedule(self, model, steps_per_epoch: int):
        """A before-step hook of the task's own schedule, or None: SiATL's auxiliary LM weight,
        ``aux_lm_weight * aux_lm_decay ** (step / steps_per_epoch)`` (an exponential decay per epoch)."""
        if self.options.aux_lm_weight <= 0 or self.options.aux_lm_decay == 1:
            return None
        head, start, decay = model.heads[AUX_LM_HEAD], self.options.aux_lm_weight, self.options.aux_lm_decay

        def before_step(step: int) -> None:
            head.weight = start * decay ** (step / max(1, steps_per_epoch))

        return before_step

    def predict(self, model, samples: list[dict], batch_size: int, device) -> Any:
        """Model outputs for ``samples``, in the form ``evaluate`` and ``write_predictions`` take."""
        raise NotImplementedError

    def evaluate(self, rows: list[dict], samples: list[dict], outputs) -> dict[str, float]:
        raise NotImplementedError

    def write_predictions(self, path: str, rows: list[dict], samples: list[dict], outputs) -> None:
        raise NotImplementedError

    # ---- checkpoint ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "labels": self.labels, "options": self.options.to_dict()}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], tokenizer, max_positions: int) -> Task:
        return cls(cls.meta_options(meta), tokenizer, meta.get("labels", []), max_positions)

    @staticmethod
    def meta_options(meta: dict[str, Any]) -> TaskOptions:
        """The options stored in a checkpoint's task entry (keys of other versions dropped)."""
        return TaskOptions.from_dict({k: v for k, v in meta.get("options", {}).items()
                                      if k in TaskOptions.field_types()})


def write_json(path: str, data) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def write_jsonl(path: str, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
