"""Where a training run's records go: one ``RunLog`` with two sinks of the same records.

Every record the Trainer logs (one per logging step: ``loss``, per-objective ``loss_NAME``,
``grad_norm``, ``lr``, ``tokens_per_s``, ``tokens``, ``elapsed``; one per evaluation: its
metrics) goes to ``metrics.jsonl`` (one JSON object a line) and, with ``train.tensorboard``, to
TensorBoard event files in ``RUN/tensorboard/``: a training record's numbers as scalars
``train/KEY``, an evaluation's as ``eval/KEY``, at the record's ``step``.

``train.tensorboard``: None (the default) writes event files when the ``tensorboard`` package is
importable and silently none when it is not; true without it is a one-line error.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from typing import Any

from ..errors import UserError
from ..io import atomic_write_text
from ..textio import open_text

TENSORBOARD_DIR = "tensorboard"
NOT_SCALARS = ("step",)  # the x of every scalar
EVAL_CONTEXT = ("tokens",)  # what an evaluation record carries besides its metrics


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def use_tensorboard(setting: bool | None) -> bool:
    """``train.tensorboard`` resolved: None -> whether tensorboard is importable."""
    if setting is None:
        return tensorboard_available()
    if setting and not tensorboard_available():
        raise UserError("train.tensorboard=true needs the tensorboard package: pip install tensorboard "
                        "(or set train.tensorboard=false)")
    return setting


def is_training_record(record: dict[str, Any]) -> bool:
    """A logging step's record (it has the learning rate), not an evaluation's."""
    return "lr" in record


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard tags and values of one record: ``train/KEY`` or ``eval/KEY`` for each finite
    number in it but the step (and an evaluation's token count)."""
    training = is_training_record(record)
    prefix = "train" if training else "eval"
    skipped = NOT_SCALARS if training else NOT_SCALARS + EVAL_CONTEXT
    return {f"{prefix}/{key}": float(value) for key, value in record.items()
            if key not in skipped and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def read_records(path: str) -> list[dict]:
    """The records of a metrics.jsonl; a last line torn by a crash or a full disk is left out."""
    with open_text(path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the record being written when the run stopped
            raise UserError(f"{path}:{number}: not a JSON record; the metrics log is damaged "
                            "(remove that line to resume)") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: not a JSON object")
        records.append(record)
    return records


class JsonlSink:
    """metrics.jsonl: one JSON object per logging step or evaluation."""

    def __init__(self, path: str):
        self.path = path

    def reset(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        open(self.path, "w").close()

    def truncate_after(self, step: int) -> None:
        """On resume, forget what an interrupted run logged after its last checkpoint -- and a
        last line torn by a crash or a full disk."""
        if not os.path.exists(self.path):
            return
        kept = [json.dumps(record) + "\n" for record in read_records(self.path) if record.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(kept))

    def write(self, record: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)  # a resume into a new --out
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        pass


class TensorBoardSink:
    """Event files in a directory; the writer opens at the first record (a resume hides what the
    interrupted run logged after its checkpoint: ``purge_step``)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.writer = None
        self.purge_step: int | None = None

    def reset(self) -> None:
        self.close()
        if os.path.isdir(self.directory):  # a new run in this directory: not the last run's curves
            for name in os.listdir(self.directory):
                if name.startswith("events.out.tfevents."):
                    os.unlink(os.path.join(self.directory, name))

    def truncate_after(self, step: int) -> None:
        self.close()
        self.purge_step = step + 1

    def write(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if not values:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(self.directory, purge_step=self.purge_step)
            self.purge_step = None
        step = int(record.get("step", 0))
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class RunLog:
    """The records of a run, written to each sink (only by the main process: ``enabled``)."""

    def __init__(self, out_dir: str, enabled: bool, tensorboard: bool | None = None):
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.enabled = enabled
        self.sinks: list = [JsonlSink(self.path)]
        if use_tensorboard(tensorboard):
            self.sinks.append(TensorBoardSink(os.path.join(out_dir, TENSORBOARD_DIR)))

    def reset(self) -> None:
        if self.enabled:
            for sink in self.sinks:
                sink.reset()

    def truncate_after(self, step: int) -> None:
        if self.enabled:
            for sink in self.sinks:
                sink.truncate_after(step)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            for sink in self.sinks:
                sink.write(record)

    def close(self) -> None:
        """Flush and close the event files (the next record opens them again)."""
        for sink in self.sinks:
            sink.close()
