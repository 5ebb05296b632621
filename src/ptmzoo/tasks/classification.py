"""Sequence-level tasks: single-sentence and sentence-pair classification, regression, multi-label.

All three encode one text (or a pair) and read one pooled vector: the [CLS] state (BERT's
pooler when the model has one) for encoders, the hidden state of the last real token for
decoders (the only one that has seen the whole input). They differ in the target and loss:
cross-entropy over classes, mean squared error on a number, binary cross-entropy per label.

Metrics follow scikit-learn / scipy: accuracy, macro-F1 (mean of per-class F1 over the classes
present in gold or predictions) and Matthews correlation for classes; for two classes also the F1
of the positive class (the second label in sorted order: ``1`` of 0/1, ``pos`` of neg/pos) as
MRPC and QQP report it, and the mean of accuracy and that F1 (GLUE's acc_and_f1); Pearson and Spearman
(average ranks for ties) for regression; micro- and macro-F1 over the label vocabulary and
subset accuracy for multi-label.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, setting
from ..errors import BadInput, UserError
from ..io import atomic_write_text
from ..models.model import SequenceHead
from .base import Task, TextColumns, label_vocabulary
from .gpt_input import (
    AUX_LM_HEAD,
    AuxiliaryLMHead,
    GPTInputOptions,
    GPTInputs,
    lm_labels,
    resize_token_embeddings,
)
from .tables import require_columns

POOLINGS = ("cls", "last", "mean", "max", "concat")  # concat: ULMFiT's [last; max; mean]


# ---- options ------------------------------------------------------------------------------------
@dataclass
class SequenceOptions(TextColumns, GPTInputOptions):
    """Tasks that read one pooled state per sequence: classification and its kin, multiple choice."""

    pooling: str | None = setting(None, choices=POOLINGS, help="sentence representation (default: cls for "
                                                               "encoders, last for decoders and --gpt-input; "
                                                               "concat: ULMFiT's [last; max; mean])")

    def validate(self) -> None:
        super().validate()
        if self.pooling is not None:
            check_choice(self.pooling, POOLINGS, "pooling")


@dataclass
class ClassificationOptions(SequenceOptions):
    """Classification and regression of a text or a sentence pair."""

    both_orders: bool = setting(False, help="sentence pairs (similarity): encode both orders and sum the "
                                            "representations")

    def validate(self) -> None:
        super().validate()
        if self.both_orders and not self.text_pair_column:
            raise UserError("--both-orders encodes sentence pairs; give --text-pair-column")


@dataclass
class MultiLabelOptions(ClassificationOptions):
    """Any number of labels per text."""

    label_separator: str = setting(",", help="separator of the labels in a TSV/CSV cell")


# ---- metrics ------------------------------------------------------------------------------------
def classification_metrics(gold: np.ndarray, predicted: np.ndarray, classes=None) -> dict[str, float]:
    """``classes``: those averaged in macro-F1 (default: every class in gold or predictions)."""
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    f1s = []
    for label in np.union1d(gold, predicted) if classes is None else classes:
        tp = np.sum((predicted == label) & (gold == label))
        fp = np.sum((predicted == label) & (gold != label))
        fn = np.sum((predicted != label) & (gold == label))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(gold == predicted)), "macro_f1": float(np.mean(f1s)),
            "mcc": matthews_corrcoef(gold, predicted)}


def confusion_counts(gold, predicted, num_labels: int) -> list[list[int]]:
    """counts[g][p]: examples of gold class g predicted as class p."""
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(counts, (np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return counts.tolist()


def binary_f1(gold: np.ndarray, predicted: np.ndarray, positive) -> float:
    """F1 of the ``positive`` class (scikit-learn's ``f1_score`` with ``pos_label``; 0 without any
    positive in gold or predictions)."""
    gold, predicted = np.asarray(gold) == positive, np.asarray(predicted) == positive
    tp = int(np.sum(gold & predicted))
    denominator = 2 * tp + int(np.sum(~gold & predicted)) + int(np.sum(gold & ~predicted))
    return 0.0 if tp == 0 else 2 * tp / denominator


def matthews_corrcoef(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Multi-class MCC (Gorodkin's R_K, as scikit-learn): 0 when either side has one class only."""
    classes, both = np.unique(np.concatenate([gold, predicted]), return_inverse=True)
    g, p = both[: len(gold)], both[len(gold) :]
    t_k = np.bincount(g, minlength=len(classes)).astype(np.float64)
    p_k = np.bincount(p, minlength=len(classes)).astype(np.float64)
    c, s = float(np.sum(g == p)), float(len(gold))
    denominator = math.sqrt((s * s - p_k @ p_k) * (s * s - t_k @ t_k))
    return 0.0 if denominator == 0 else float((c * s - t_k @ p_k) / denominator)


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy.stats.rankdata's default)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64) - np.mean(x), np.asarray(y, np.float64) - np.mean(y)
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return 0.0 if denominator == 0 else float(x @ y / denominator)


def regression_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    gold, predicted = np.asarray(gold, np.float64), np.asarray(predicted, np.float64)
    return {"pearson": pearson(gold, predicted),
            "spearman": pearson(rank_average(gold), rank_average(predicted)),
            "mse": float(np.mean((gold - predicted) ** 2))}


def multilabel_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``gold`` and ``predicted`` are 0/1 matrices [examples, labels]; F1 of a label with neither
    gold nor predicted positives counts as 0 in the macro average (scikit-learn's zero_division=0)."""
    gold, predicted = np.asarray(gold, bool), np.asarray(predicted, bool)
    tp = (gold & predicted).sum(0)
    fp = (~gold & predicted).sum(0)
    fn = (gold & ~predicted).sum(0)

    def f1(tp, fp, fn):
        denominator = 2 * tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)

    return {"micro_f1": float(f1(tp.sum(), fp.sum(), fn.sum())), "macro_f1": float(np.mean(f1(tp, fp, fn))),
            "subset_accuracy": float(np.mean((gold == predicted).all(1)))}


# ---- tasks --------------------------------------------------------------------------------------
def pool_states(hidden: torch.Tensor, mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """One vector per sequence from states [B, L, H]: the first token's (``cls``), the ``last``
    real token's (right or left padding alike), or the ``max`` or ``mean`` over the real tokens."""
    if kind == "cls":
        return hidden[:, 0]
    if mask is None:
        return {"last": lambda: hidden[:, -1], "max": lambda: hidden.max(dim=1).values,
                "mean": lambda: hidden.mean(dim=1)}[kind]()
    if kind == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    if kind == "max":
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).max(dim=1).values
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * mask.bool()).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class ClassificationHead(SequenceHead):
    kind = "classification"
    target_key = "labels"

    def __init__(self, backbone, num_labels: int = 2, pooling: str = "cls", dropout: float = 0.1):
        super().__init__(backbone, num_labels=num_labels, pooling=pooling, dropout=dropout)
        check_choice(pooling, POOLINGS, "pooling")
        self.pooling = pooling
        self.use_pooler = pooling == "cls" and backbone.has_pooler
        self.dropout = nn.Dropout(dropout)
        width = backbone.config.hidden_size * (3 if pooling == "concat" else 1)
        self.classifier = nn.Linear(width, num_labels)
        nn.init.normal_(self.classifier.weight, std=backbone.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def pool(self, out, batch) -> torch.Tensor:
        hidden = out.last_hidden_state
        mask = batch.get("attention_mask")
        if self.use_pooler:  # "cls" pooling through BERT's pooler
            return out.pooler_output
        if self.pooling == "concat":  # ULMFiT's concat pooling: [h_T; maxpool(H); meanpool(H)]
            return torch.cat([pool_states(hidden, mask, kind) for kind in ("last", "max", "mean")], dim=-1)
        return pool_states(hidden, mask, self.pooling)

    def pool_groups(self, out, batch) -> torch.Tensor:
        """Pooled states [batch, hidden], or [batch, group, hidden] for grouped inputs (which the
        model ran as one sequence per row)."""
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        if ids is None or ids.dim() < 3:  # (None: a model that reads no token ids, called without them)
            return self.pool(out, batch)
        flat = {"input_ids": ids.reshape(-1, ids.shape[-1]),
                "attention_mask": None if mask is None else mask.reshape(-1, mask.shape[-1])}
        return self.pool(out, flat).view(*ids.shape[:2], -1)

    def logits(self, out, batch):
        pooled = self.pool_groups(out, batch)
        if pooled.dim() == 3:  # both orders of a pair (GPT-1 similarity): the representations summed
            pooled = pooled.sum(1)
        return self.classifier(self.dropout(pooled))

    def loss_sum(self, out, batch):
        return F.cross_entropy(self.logits(out, batch).float(), batch[self.target_key], reduction="sum")


class RegressionHead(ClassificationHead):
    kind = "regression"

    def loss_sum(self, out, batch):
        return F.mse_loss(self.logits(out, batch).float()[:, 0], batch[self.target_key].float(), reduction="sum")


class MultiLabelHead(ClassificationHead):
    """Binary cross-entropy per label; the loss is the mean over examples x labels (counted by
    ``SequenceHead.count_targets`` as the number of target entries)."""

    kind = "multilabel"

    def loss_sum(self, out, batch):
        return F.binary_cross_entropy_with_logits(self.logits(out, batch).float(), batch[self.target_key].float(),
                                                  reduction="sum")


class SequenceTask(Task):
    """A task over pooled sequence states; a decoder may read GPT-1's marker inputs
    (``--gpt-input``) and add the auxiliary LM loss (``--aux-lm-weight``)."""

    Options = SequenceOptions

    def has_labels(self, rows):
        return self.options.label_column in rows[0]

    def collate(self, samples):
        batch = super().collate(samples)
        if self.options.aux_lm_weight > 0:
            batch["lm_labels"] = lm_labels(batch["input_ids"], batch["attention_mask"])
        return batch

    def default_pooling(self, backbone) -> str:
        """--pooling, else [CLS] for encoders and the last token for decoders and GPT-1 inputs
        (the extract token, the only one that has read the whole input) and for backbones whose
        summary token ends the input (XLNet's <cls>)."""
        return self.options.pooling or ("last" if backbone.causal or backbone.pools_last or self.options.gpt_input
                                        else "cls")

    def gpt_inputs(self) -> GPTInputs | None:
        """GPT-1's marker tokens (added to the tokenizer when missing), with --gpt-input."""
        if not self.options.gpt_input:
            return None
        if not hasattr(self, "_gpt_inputs"):
            self._gpt_inputs = GPTInputs(self.tokenizer, self.max_length)
        return self._gpt_inputs

    def add_head(self, model) -> None:
        if self.options.gpt_input:  # room in the embedding matrix for the marker tokens
            self.gpt_inputs()
            resize_token_embeddings(model.backbone, self.tokenizer.vocab_size)
        super().add_head(model)
        if self.options.aux_lm_weight > 0:  # after resizing: the LM head is tied to the embeddings
            model.add_head(AUX_LM_HEAD, AuxiliaryLMHead, weight=self.options.aux_lm_weight)

    def schedule(self, model, steps_per_epoch: int):
        """SiATL's auxiliary LM weight, ``aux_lm_weight * aux_lm_decay ** (step / steps_per_epoch)``
        (an exponential decay per epoch); None when the weight is constant or absent."""
        if self.options.aux_lm_weight <= 0 or self.options.aux_lm_decay == 1:
            return None
        head, start, decay = model.heads[AUX_LM_HEAD], self.options.aux_lm_weight, self.options.aux_lm_decay

        def before_step(step: int) -> None:
            head.weight = start * decay ** (step / max(1, steps_per_epoch))

        return before_step


TRY_LR = "--lr auto (or a larger --lr for a small model)"
PAIR_METRICS = ("f1", "accuracy_f1")  # two classes only


class ClassificationTask(SequenceTask):
    name = "classification"
    Options = ClassificationOptions
    head = ClassificationHead
    metric_names = ("accuracy", "macro_f1", "mcc", *PAIR_METRICS)
    endpoint = "classify"

    @classmethod
    def infer_labels(cls, rows, options, path):
        require_columns(rows, path, {"label_column": options.label_column})
        labels = label_vocabulary(r[options.label_column] for r in rows)
        if len(labels) < 2:
            raise UserError(f"{path} has only one label ({labels[0]}); classification needs two or more")
        return labels

    def text_columns(self) -> list[str]:
        return [self.options.text_column] + ([self.options.text_pair_column] if self.options.text_pair_column else [])

    def encode(self, rows, path, with_labels=True):
        opts = self.options
        wanted = {"text_column": opts.text_column, "text_pair_column": opts.text_pair_column}
        if with_labels:
            wanted["label_column"] = opts.label_column
        require_columns(rows, path, wanted)
        texts = [str(r[opts.text_column]) for r in rows]
        pairs = [str(r[opts.text_pair_column]) for r in rows] if opts.text_pair_column else None
        samples = self.encode_texts(texts, pairs)
        if with_labels:
            for number, (sample, row) in enumerate(zip(samples, rows), start=1):
                sample["labels"] = self.target(row[opts.label_column], path, number)
        return samples

    def encode_texts(self, texts: list[str], pairs: list[str] | None) -> list[dict]:
        """Samples of input ids and type ids: the tokenizer's template, or GPT-1's markers; with
        --both-orders each sample is a group of two sequences, (a, b) and (b, a)."""
        gpt = self.gpt_inputs()
        if gpt is not None:
            ids = gpt.encode(texts, pairs, both_orders=self.options.both_orders)
            zeros = [[[0] * len(r) for r in i] if self.options.both_orders else [0] * len(i) for i in ids]
            return [{"input_ids": i, "token_type_ids": t} for i, t in zip(ids, zeros)]

        def template(first, second):
            return self.tokenizer.encode_batch(first, second, max_length=self.max_length, with_type_ids=True)

        ids, types = template(texts, pairs)
        if not self.options.both_orders:
            return [{"input_ids": i, "token_type_ids": t} for i, t in zip(ids, types)]
        swapped_ids, swapped_types = template(pairs, texts)
        return [{"input_ids": [i, si], "token_type_ids": [t, st]}
                for i, t, si, st in zip(ids, types, swapped_ids, swapped_types)]

    def target(self, value, path: str, number: int):
        label = str(value)
        if label not in self.label_ids:
            raise UserError(f"{path}: row {number} has label '{label}', which is not among the training "
                            f"labels ({', '.join(self.labels)})")
        return self.label_ids[label]

    def collate(self, samples):
        batch = super().collate(samples)
        if "labels" in samples[0]:
            batch["labels"] = torch.as_tensor([s["labels"] for s in samples], dtype=self.target_dtype)
        return batch

    target_dtype = torch.long

    def head_options(self, backbone):
        return {"num_labels": len(self.labels),
                "pooling": self.default_pooling(backbone)}

    def meta(self):
        return {**super().meta(), "pooling": self.options.pooling}

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def predict(self, model, samples, batch_size, device) -> np.ndarray:
        """Class probabilities [examples, labels] (regression: values; multi-label: per-label probabilities)."""
        return np.stack(self.sample_outputs(model, samples, batch_size, device,
                                            lambda chunk, logits: self.scores(logits).numpy()))

    def available_metrics(self):
        return self.metric_names if len(self.labels) == 2 else tuple(
            m for m in self.metric_names if m not in PAIR_METRICS)

    def evaluate(self, rows, samples, outputs):
        gold = np.asarray([s["labels"] for s in samples])
        predicted = outputs.argmax(-1)
        metrics = classification_metrics(gold, predicted)
        if len(self.labels) == 2:  # the positive class: the second label (1 of 0/1)
            metrics["f1"] = binary_f1(gold, predicted, 1)
            metrics["accuracy_f1"] = (metrics["accuracy"] + metrics["f1"]) / 2
        nll = F.nll_loss(torch.log(torch.from_numpy(outputs).clamp(min=1e-12)), torch.from_numpy(gold))
        metrics["eval_loss"] = float(nll)
        return metrics

    def warnings(self, rows, samples, outputs, metrics):
        """One class predicted for every example, or a macro-F1 no better than always answering
        the most frequent class."""
        gold = np.asarray([s["labels"] for s in samples])
        predicted = outputs.argmax(-1)
        if len(gold) == 0 or len(np.unique(gold)) < 2:
            return []
        causes = ("Likely causes: a learning rate too low for the model (or too high), too few epochs or examples, "
                  f"one class much more frequent than the others. Try {TRY_LR}, more --epochs, and --metric "
                  "macro_f1 (or f1) to select the checkpoint by more than accuracy")
        if len(np.unique(predicted)) == 1:
            return [(f"the classifier predicts one class ('{self.labels[int(predicted[0])]}') for all {len(gold)} "
                    f"dev examples: it learned nothing from the text. {causes}")]
        majority = np.bincount(gold).argmax()
        baseline = classification_metrics(gold, np.full_like(gold, majority))["macro_f1"]
        macro_f1 = classification_metrics(gold, predicted)["macro_f1"]
        if macro_f1 <= baseline + 0.01:
            return [(f"the dev macro-F1 {macro_f1:.4f} is at the majority-class baseline ({baseline:.4f}: answering "
                    f"'{self.labels[int(majority)]}' for every example). {causes}")]
        return []

    report_files = ("confusion_matrix.png",)

    def write_reports(self, out_dir, rows, samples, outputs, prefix=""):
        """``confusion_matrix.png`` and ``confusion_matrix`` (``{"labels", "counts"}``, counts[gold][predicted])."""
        from ..plot import plot_confusion_matrix

        counts = confusion_counts([s["labels"] for s in samples], outputs.argmax(-1), len(self.labels))
        plot_confusion_matrix(counts, self.labels, os.path.join(out_dir, prefix + "confusion_matrix.png"))
        return {"confusion_matrix": {"labels": list(self.labels), "counts": counts}}

    def record(self, output) -> dict:
        """The prediction of one example: the most probable label, its probability, every label's."""
        best = int(output.argmax())
        return {"label": self.labels[best], "score": float(output[best]),
                "scores": {label: float(p) for label, p in zip(self.labels, output)}}

    def records(self, rows, samples, outputs):
        return [self.record(output) for output in outputs]

    def request_rows(self, items):
        opts = self.options
        if opts.text_pair_column is None and any("pair" in item for item in items):
            raise BadInput("this model classifies single texts; drop \"pairs\"")
        if opts.text_pair_column is not None and any("pair" not in item for item in items):
            raise BadInput("this model classifies pairs of texts; give \"pairs\" (one per text) with \"texts\"")
        return [{opts.text_column: item["text"], **({opts.text_pair_column: item["pair"]} if "pair" in item else {})}
                for item in items]

    def prediction_cells(self, record) -> list[str]:
        return [record["label"], f"{record['score']:.4f}"]

    def gold_cell(self, value) -> str:
        return str(value)

    prediction_header = ("prediction", "confidence")

    def write_predictions(self, path, rows, samples, outputs):
        """TSV: the text columns, the gold label when the file has one, the prediction."""
        columns = self.text_columns()
        has_gold = self.has_labels(rows)
        lines = ["\t".join(columns + (["label"] if has_gold else []) + list(self.prediction_header))]
        for row, record in zip(rows, self.records(rows, samples, outputs)):
            cells = [str(row[c]).replace("\t", " ").replace("\n", " ") for c in columns]
            if has_gold:
                cells.append(self.gold_cell(row[self.options.label_column]))
            lines.append("\t".join(cells + self.prediction_cells(record)))
        atomic_write_text(path, "\n".join(lines) + "\n")


class RegressionTask(ClassificationTask):
    name = "regression"
    report_files, write_reports = (), Task.write_reports  # no classes to confuse: no confusion matrix
    head = RegressionHead
    metric_names = ("pearson", "spearman")
    target_dtype = torch.float32
    prediction_header = ("prediction",)

    @classmethod
    def infer_labels(cls, rows, options, path):
        return []  # a number, no vocabulary

    def target(self, value, path, number):
        try:
            result = float(value)
        except (TypeError, ValueError):
            result = math.nan
        if not math.isfinite(result):
            raise UserError(f"{path}: row {number} has label {value!r}; regression needs a number")
        return result

    def head_options(self, backbone):
        return {**super().head_options(backbone), "num_labels": 1}

    def scores(self, logits):
        return logits[:, 0]

    def evaluate(self, rows, samples, outputs):
        return regression_metrics(np.asarray([s["labels"] for s in samples]), outputs)

    def warnings(self, rows, samples, outputs, metrics):
        """Predictions that hardly vary: under 5% of the spread of the gold values."""
        gold = np.asarray([s["labels"] for s in samples], np.float64)
        spread, predicted = float(np.std(gold)), float(np.std(np.asarray(outputs, np.float64)))
        if spread == 0 or predicted >= 0.05 * spread:
            return []
        return [(f"the regression's predictions hardly vary (standard deviation {predicted:.4g}, the gold values' "
                f"{spread:.4g}): it predicts about the same number ({float(np.mean(outputs)):.4g}) for every "
                f"example. Likely causes: a learning rate too low (or too high), too few epochs, targets on a "
                f"large scale. Try {TRY_LR}, more --epochs, targets scaled to about 0..1")]

    def record(self, output):
        return {"value": float(output)}

    def prediction_cells(self, record):
        return [f"{record['value']:.6g}"]


class MultiLabelTask(ClassificationTask):
    """Any number of labels per example: a list in JSON rows, or ``--label-separator``-joined in
    a TSV/CSV cell; an empty cell means no label. A label is predicted at probability >= 0.5."""

    name = "multilabel"
    Options = MultiLabelOptions
    head = MultiLabelHead
    metric_names = ("micro_f1", "macro_f1", "subset_accuracy")
    target_dtype = torch.float32
    report_files, write_reports = (), Task.write_reports  # labels are not exclusive: no confusion matrix
    prediction_header = ("prediction", "scores")  # scores: the probability of each predicted label

    @classmethod
    def split(cls, value, options) -> list[str]:
        if isinstance(value, list):
            return [str(v) for v in value]
        return [v.strip() for v in str(value).split(options.label_separator) if v.strip()]

    @classmethod
    def infer_labels(cls, rows, options, path):
        require_columns(rows, path, {"label_column": options.label_column})
        labels = label_vocabulary(v for r in rows for v in cls.split(r[options.label_column], options))
        if not labels:
            raise UserError(f"{path} has no labels in column '{options.label_column}'")
        return labels

    def target(self, value, path, number):
        vector = [0.0] * len(self.labels)
        for label in self.split(value, self.options):
            vector[super().target(label, path, number)] = 1.0
        return vector

    def scores(self, logits):
        return torch.sigmoid(logits)

    def evaluate(self, rows, samples, outputs):
        return multilabel_metrics(np.asarray([s["labels"] for s in samples]) > 0.5, outputs >= 0.5)

    def warnings(self, rows, samples, outputs, metrics):
        """The same label set predicted for every example (when the gold sets differ)."""
        gold, predicted = np.asarray([s["labels"] for s in samples]) > 0.5, np.asarray(outputs) >= 0.5
        if len(gold) < 2 or len(np.unique(gold, axis=0)) < 2 or len(np.unique(predicted, axis=0)) > 1:
            return []
        chosen = ", ".join(self.labels[i] for i in np.flatnonzero(predicted[0])) or "no label"
        return [(f"the model predicts the same labels ({chosen}) for all {len(gold)} dev examples: it learned "
                f"nothing from the text. Likely causes: a learning rate too low (or too high), too few epochs, "
                f"rare labels. Try {TRY_LR}, more --epochs")]

    def record(self, output):
        """The labels at probability >= 0.5 and every label's probability."""
        return {"labels": [self.labels[i] for i in np.flatnonzero(output >= 0.5)],
                "scores": {label: float(p) for label, p in zip(self.labels, output)}}

    def prediction_cells(self, record):
        return [self.options.label_separator.join(record["labels"]),
                self.options.label_separator.join(f"{record['scores'][label]:.4f}" for label in record["labels"])]

    def gold_cell(self, value):
        return self.options.label_separator.join(value) if isinstance(value, list) else str(value)


# ---- heads --------------------------------------------------------------------------------------


__all__ = ["PAIR_METRICS", "POOLINGS", "ClassificationHead", "ClassificationOptions", "ClassificationTask", "MultiLabelHead",
           "MultiLabelOptions", "MultiLabelTask", "RegressionHead", "RegressionTask", "SequenceOptions", "SequenceTask",
           "binary_f1", "classification_metrics", "multilabel_metrics", "regression_metrics"]
