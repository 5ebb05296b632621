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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..config import Config, setting
from ..data.derived import add_derived_inputs
from ..errors import UserError
from ..io import atomic_write_text
from ..models.model import Head, unwrap
from .tables import read_table


@dataclass
class TaskOptions(Config):
    """What every task reads. Each task names its own options class, this one extended by the
    fields it reads (``Task.Options``), so a setting belongs to the tasks that use it."""

    max_length: int = setting(128, help="tokens per input sequence (longer inputs are cut)")

    def validate(self) -> None:
        super().validate()  # options classes are mixed (cooperative validation)
        if self.max_length < 4:
            raise UserError("--max-length must be at least 4")


@dataclass
class TextColumns(TaskOptions):
    """Columns of a labelled table: one text or a pair, and a label."""

    text_column: str = setting("text", help="the text (multiple-choice: the context)")
    text_pair_column: str | None = setting(None, help="second text column for sentence-pair tasks "
                                                      "(multiple-choice: a question appended to the context)")
    label_column: str = setting("label", help="the label (multiple-choice: the index or text of the right choice)")


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


# A batch of inference keeps taking rows (longest first) while the next row would be padded by at
# most this share of the batch's length, or while the batch is too small to use the matrix kernels well.
MAX_PADDING_SHARE = 0.25
MIN_BATCH_TOKENS = 1024


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """The indices of ``lengths`` in batches for inference, no compute spent on much padding.

    Sorted longest first; a batch ends at ``batch_size`` rows, or where the next row is shorter than
    the batch's first by more than ``MAX_PADDING_SHARE`` once the batch holds ``MIN_BATCH_TOKENS``
    (padded) tokens. Variable-length inputs so cost about their real tokens, not batch x longest;
    equal lengths give the usual batches of ``batch_size``. Callers put the outputs back in order.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]
            too_short = lengths[index] < (1 - MAX_PADDING_SHARE) * longest
            if len(batch) < batch_size and not (too_short and len(batch) * longest >= MIN_BATCH_TOKENS):
                batch.append(index)
                continue
        batches.append([index])
    return batches


def in_input_order(count: int, batches: Iterable[tuple[list[int], Iterable]]) -> list:
    """The ``count`` outputs of ``length_batches`` back in input order, from each batch's
    (indices, one output per index)."""
    outputs: list = [None] * count
    for indices, batch_outputs in batches:
        for index, output in zip(indices, batch_outputs, strict=True):
            outputs[index] = output
    return outputs


def sample_length(sample: dict) -> int:
    """Tokens of a sample's longest sequence (a sample may be a group of sequences)."""
    ids = sample["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)


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
    Options: ClassVar[type[TaskOptions]] = TaskOptions  # the fields this task reads (its flags, its config)
    head: ClassVar[type[Head]]
    metric_names: ClassVar[tuple[str, ...]]  # dev metrics that can select the best checkpoint; the first is the default
    prediction_suffix: ClassVar[str] = ".tsv"
    # the ``ptmzoo serve`` endpoint (/v1/<endpoint>) that answers with this task's ``records``;
    # None: the task's predictions have no endpoint (``request_rows`` is not defined)
    endpoint: ClassVar[str | None] = None

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

    def read_inputs(self, path: str, fmt: str = "auto", columns: list[str] | None = None) -> list[dict]:
        """The rows ``ptmzoo predict`` reads (gold labels not needed): by default those of ``read``;
        a task may read more input formats, with the model's tokenizer at hand."""
        if fmt == "text":
            raise UserError(f"--format text (plain sentences) is an input of tagging models; the {self.name} task "
                            "reads tsv, csv or jsonl")
        return self.read(path, self.options, fmt, columns)

    @classmethod
    def infer_labels(cls, rows: list[dict], options: TaskOptions, path: str) -> list[str]:
        """The label vocabulary of the training rows (stored in the checkpoint)."""
        return []

    def has_labels(self, rows: list[dict]) -> bool:
        raise NotImplementedError

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
        return add_derived_inputs(batch, self.derived_inputs, self.tokenizer, as_tensors=True)

    # ---- model ------------------------------------------------------------------------------------
    def head_options(self, backbone) -> dict[str, Any]:
        return {}

    def add_head(self, model) -> None:
        self.derived_inputs = model.backbone.derived_inputs  # e.g. ELMo's characters: added by collate
        model.add_head(self.head_name, self.head, **self.head_options(model.backbone))

    @torch.no_grad()
    def batch_logits(self, model, samples: list[dict], batch_size: int,
                     device) -> Iterator[tuple[list[int], list[dict], torch.Tensor]]:
        """(indices, those samples, head logits on the CPU as float32) for batches of similar
        length (``length_batches``), in eval mode."""
        was_training = model.training
        model.eval()
        self.derived_inputs = unwrap(model).backbone.derived_inputs
        try:
            for indices in length_batches([sample_length(s) for s in samples], batch_size):
                chunk = [samples[i] for i in indices]
                batch = self.collate(chunk)
                inputs = {k: v.to(device) for k, v in unwrap(model).select_inputs(batch).items()}
                logits = model(**inputs).head_logits[self.head_name]
                yield indices, chunk, logits.float().cpu()
        finally:
            model.train(was_training)

    def sample_outputs(self, model, samples: list[dict], batch_size: int, device,
                       of_batch: Callable[[list[dict], torch.Tensor], Iterable]) -> list:
        """One output per sample, in the order of ``samples``: ``of_batch(samples, logits)`` gives
        those of a batch (``batch_logits``)."""
        return in_input_order(len(samples), ((indices, of_batch(chunk, logits)) for indices, chunk, logits
                                             in self.batch_logits(model, samples, batch_size, device)))

    def schedule(self, model, steps_per_epoch: int) -> Callable[[int], None] | None:
        """A before-step hook of the task's own schedule (run beside the strategy's), or None."""
        return None

    def predict(self, model, samples: list[dict], batch_size: int, device) -> Any:
        """Model outputs for ``samples``, in the form ``evaluate`` and ``write_predictions`` take."""
        raise NotImplementedError

    def evaluate(self, rows: list[dict], samples: list[dict], outputs) -> dict[str, float]:
        raise NotImplementedError

    def warnings(self, rows: list[dict], samples: list[dict], outputs, metrics: dict[str, float]) -> list[str]:
        """Signs in the dev outputs that the model learned nothing (one class for everything, only
        O tags, constant values), each with its likely causes and what to try; [] when none."""
        return []

    report_files: tuple[str, ...] = ()  # the names write_reports writes

    def write_reports(self, out_dir: str, rows: list[dict], samples: list[dict], outputs, prefix: str = "") -> dict:
        """Files of the final evaluation beside ``metrics.json`` in ``out_dir``, each name of
        ``report_files`` after ``prefix`` (tagging: ``per_type.tsv``; classification:
        ``confusion_matrix.png``), and the entries they add to the metrics; none by default."""
        return {}

    def available_metrics(self) -> tuple[str, ...]:
        """The metrics ``evaluate`` reports for this task's labels (some need two classes)."""
        return self.metric_names

    def write_predictions(self, path: str, rows: list[dict], samples: list[dict], outputs) -> None:
        raise NotImplementedError

    # ---- serving: the records ``ptmzoo predict`` writes, ``Model.predict`` and the server return --
    def request_rows(self, items: list[dict]) -> list[dict]:
        """Rows (as ``read_inputs`` gives them) from the checked items of a prediction request
        (``{"text", "pair"}``, ``{"question", "context"}``: see ``ptmzoo.predictions``)."""
        raise UserError(f"the {self.name} task has no prediction endpoint")

    def records(self, rows: list[dict], samples: list[dict], outputs) -> list[dict]:
        """One JSON-ready prediction per row: what ``write_predictions`` writes and the task's
        endpoint returns."""
        raise NotImplementedError

    # ---- checkpoint ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "labels": self.labels, "options": self.options.to_dict()}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], tokenizer, max_positions: int | None) -> Task:
        return cls(cls.meta_options(meta), tokenizer, meta.get("labels", []), max_positions)

    @classmethod
    def meta_options(cls, meta: dict[str, Any]) -> TaskOptions:
        """The options stored in a checkpoint's task entry; keys of other versions and other tasks
        dropped (checkpoints before per-task options stored every task's fields)."""
        known = cls.Options.field_types()
        return cls.Options.from_dict({k: v for k, v in meta.get("options", {}).items() if k in known})


def write_json(path: str, data) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def write_jsonl(path: str, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
