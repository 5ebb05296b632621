"""Multiple choice (SWAG, RACE, COPA, C3 ...): one shared encoder, one score per choice.

Each choice is read together with its context as one sequence -- the tokenizer's pair template
(``[CLS] context [SEP] choice [SEP]``), or GPT-1's ``<start> context <delim> choice <extract>``
with ``--gpt-input`` -- so a batch is [batch, choices, length]. The model runs one sequence per
choice; the pooled state (CLS for encoders, the last real token for decoders) goes through a
linear scorer to one number, and a softmax over the choices gives the answer. Rows may have
different numbers of choices: missing ones are padding and score -inf.

Rows: a context column (``--text-column``), an optional question column (``--text-pair-column``,
appended to the context), the choices either as a list in one column (JSONL) or as several
columns (``--choices-column ending0,ending1,ending2,ending3``), and the label: the index of the
right choice (0-based) or its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import setting
from ..errors import UserError
from ..io import atomic_write_text
from .classification import ClassificationHead, SequenceOptions, SequenceTask
from .tables import require_columns


@dataclass
class MultipleChoiceOptions(SequenceOptions):
    """A context and its choices."""

    choices_column: str = setting("choices", help="the column with the list of choices, or comma-separated "
                                                  "columns (one choice each)")


class MultipleChoiceHead(ClassificationHead):
    """The classification head's pooling with a one-output scorer: logits [batch, choices]."""

    kind = "multiple_choice"

    def __init__(self, backbone, pooling: str = "cls", dropout: float = 0.1, num_labels: int = 1):
        super().__init__(backbone, num_labels=1, pooling=pooling, dropout=dropout)

    def logits(self, out, batch):
        scores = self.classifier(self.dropout(self.pool_groups(out, batch))).squeeze(-1)
        present = batch["attention_mask"].sum(-1) > 0  # padding choices of rows with fewer choices
        return scores.masked_fill(~present, float("-inf"))

    def loss_sum(self, out, batch):
        return F.cross_entropy(self.logits(out, batch).float(), batch[self.target_key], reduction="sum")


class MultipleChoiceTask(SequenceTask):
    name = "multiple-choice"
    Options = MultipleChoiceOptions
    head = MultipleChoiceHead
    metric_names = ("accuracy",)

    @classmethod
    def choice_columns(cls, options) -> list[str]:
        return [c.strip() for c in options.choices_column.split(",") if c.strip()]

    @classmethod
    def choices_of(cls, row: dict, options, path: str, number: int) -> list[str]:
        columns = cls.choice_columns(options)
        if len(columns) > 1:
            choices = [row[c] for c in columns]
        else:
            choices = row[columns[0]]
            if isinstance(choices, str) and choices.lstrip().startswith("["):  # a JSON list in a TSV cell
                try:
                    choices = json.loads(choices)
                except json.JSONDecodeError:
                    pass
        if not isinstance(choices, list) or len(choices) < 2:
            raise UserError(f"{path}: row {number} needs a list of two or more choices in '{columns[0]}' "
                            "(or several columns: --choices-column a,b,c)")
        return [str(c) for c in choices]

    @classmethod
    def infer_labels(cls, rows, options, path):
        columns = {f"choices_column ({c})": c for c in cls.choice_columns(options)}
        require_columns(rows, path, {"text_column": options.text_column, "label_column": options.label_column,
                                     **columns})
        return []  # the answer is a position among the row's choices, no vocabulary

    def answer(self, value, choices: list[str], path: str, number: int) -> int:
        """The gold choice: its index (0-based), or its text."""
        text = str(value).strip()
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(choices):
            return int(text)
        if text in choices:
            return choices.index(text)
        raise UserError(f"{path}: row {number} has label {value!r}; expected the index (0..{len(choices) - 1}) "
                        "or the text of one of its choices")

    def context(self, row: dict) -> str:
        opts = self.options
        context = str(row[opts.text_column])
        return f"{context} {row[opts.text_pair_column]}" if opts.text_pair_column else context

    def encode(self, rows, path, with_labels=True):
        opts = self.options
        wanted = {"text_column": opts.text_column, "text_pair_column": opts.text_pair_column,
                  **{f"choices_column ({c})": c for c in self.choice_columns(opts)}}
        if with_labels:
            wanted["label_column"] = opts.label_column
        require_columns(rows, path, wanted)
        choices = [self.choices_of(row, opts, path, n) for n, row in enumerate(rows, start=1)]
        contexts = [self.context(row) for row, cs in zip(rows, choices) for _ in cs]
        answers = [c for cs in choices for c in cs]
        gpt = self.gpt_inputs()
        if gpt is not None:
            ids = gpt.encode(contexts, answers)
            types = [[0] * len(i) for i in ids]
        else:
            ids, types = self.tokenizer.encode_batch(contexts, answers, max_length=self.max_length,
                                                     with_type_ids=True)
        samples, start = [], 0
        for number, (row, cs) in enumerate(zip(rows, choices), start=1):
            end = start + len(cs)
            sample = {"input_ids": ids[start:end], "token_type_ids": types[start:end], "choices": cs}
            if with_labels:
                sample["labels"] = self.answer(row[opts.label_column], cs, path, number)
            samples.append(sample)
            start = end
        return samples

    def collate(self, samples):
        batch = super().collate(samples)  # [batch, choices, length]
        if "labels" in samples[0]:
            batch["labels"] = torch.as_tensor([s["labels"] for s in samples], dtype=torch.long)
        return batch

    def head_options(self, backbone):
        return {"pooling": self.default_pooling(backbone)}

    def predict(self, model, samples, batch_size, device) -> list[np.ndarray]:
        """Per example, the probability of each of its choices."""
        return self.sample_outputs(model, samples, batch_size, device, lambda chunk, logits: [
            row[: len(sample["choices"])] for sample, row in zip(chunk, torch.softmax(logits, dim=-1).numpy())])

    def evaluate(self, rows, samples, outputs):
        gold = np.asarray([s["labels"] for s in samples])
        predicted = np.asarray([int(p.argmax()) for p in outputs])
        nll = -np.mean([np.log(max(float(p[g]), 1e-12)) for p, g in zip(outputs, gold)])
        return {"accuracy": float(np.mean(gold == predicted)), "eval_loss": float(nll)}

    def write_predictions(self, path, rows, samples, outputs):
        """TSV: the context, the gold label when the file has one, the predicted index, its text and probability."""
        has_gold = self.has_labels(rows)
        header = ["context"] + (["label"] if has_gold else []) + ["prediction", "choice", "confidence"]
        lines = ["\t".join(header)]
        for row, sample, probabilities in zip(rows, samples, outputs):
            best = int(probabilities.argmax())
            cells = [self.context(row)] + ([str(row[self.options.label_column])] if has_gold else [])
            cells += [str(best), sample["choices"][best], f"{float(probabilities[best]):.4f}"]
            lines.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells))
        atomic_write_text(path, "\n".join(lines) + "\n")


__all__ = ["MultipleChoiceHead", "MultipleChoiceOptions", "MultipleChoiceTask"]
