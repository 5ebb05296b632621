"""Single-sentence and sentence-pair classification.

Encoder models classify from the pooled [CLS] state (BERT's pooler when the model has one);
decoder models from the hidden state of the last real token, which is the only one that has
seen the whole input. Metrics: accuracy and macro-F1 (the mean of per-class F1 over the classes
present in gold or predictions, as scikit-learn computes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import UserError
from ..models.model import SequenceHead, register_head
from .tables import require_columns


POOLINGS = ("cls", "last", "mean")


@dataclass
class ClassificationOptions(Config):
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    max_length: int = 128
    pooling: str | None = None  # cls | last | mean; default: cls for encoders, last for decoders

    def validate(self) -> None:
        if self.max_length < 4:
            raise UserError("--max-length must be at least 4")
        if self.pooling not in (None, *POOLINGS):
            raise UserError(f"unknown pooling '{self.pooling}' (choose from {', '.join(POOLINGS)})")


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


class ClassificationTask:
    name = "classification"

    def __init__(self, options: ClassificationOptions, tokenizer, labels: list[str], max_positions: int):
        self.options = options
        self.tokenizer = tokenizer
        self.labels = labels
        self.label_ids = {name: i for i, name in enumerate(labels)}
        self.max_length = min(options.max_length, max_positions)
        if tokenizer.pad_id is None and tokenizer.document_separator_id is None:
            raise UserError("the tokenizer has no padding token")
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.document_separator_id

    def columns(self) -> dict[str, str | None]:
        return {"text_column": self.options.text_column, "text_pair_column": self.options.text_pair_column}

    def encode(self, rows: list[dict], path: str, with_labels: bool = True) -> list[dict]:
        wanted = self.columns()
        if with_labels:
            wanted["label_column"] = self.options.label_column
        require_columns(rows, path, wanted)
        texts = [str(r[self.options.text_column]) for r in rows]
        pairs = [str(r[self.options.text_pair_column]) for r in rows] if self.options.text_pair_column else None
        ids, types = self.tokenizer.encode_batch(texts, pairs, max_length=self.max_length, with_type_ids=True)
        samples = []
        for i, (row_ids, row_types) in enumerate(zip(ids, types)):
            sample = {"input_ids": row_ids, "token_type_ids": row_types}
            if with_labels:
                label = str(rows[i][self.options.label_column])
                if label not in self.label_ids:
                    raise UserError(f"{path}: row {i + 1} has label '{label}', which is not among the training "
                                    f"labels ({', '.join(self.labels)})")
                sample["labels"] = self.label_ids[label]
            samples.append(sample)
        return samples

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(s["input_ids"]) for s in samples)
        input_ids = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        token_type_ids = torch.zeros((len(samples), length), dtype=torch.long)
        for row, sample in enumerate(samples):
            n = len(sample["input_ids"])
            input_ids[row, :n] = torch.as_tensor(sample["input_ids"])
            token_type_ids[row, :n] = torch.as_tensor(sample["token_type_ids"])
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if "labels" in samples[0]:
            batch["labels"] = torch.as_tensor([s["labels"] for s in samples], dtype=torch.long)
        return batch

    @torch.no_grad()
    def predict(self, model, samples: list[dict], batch_size: int, device) -> np.ndarray:
        """Class probabilities, [len(samples), num_labels]."""
        was_training = model.training
        model.eval()
        probs = []
        try:
            for start in range(0, len(samples), batch_size):
                batch = self.collate(samples[start : start + batch_size])
                batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
                logits = model(**batch).head_logits["classification"]
                probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        finally:
            model.train(was_training)
        return np.concatenate(probs)


def classification_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    f1s = []
    for label in np.union1d(gold, predicted):
        tp = np.sum((predicted == label) & (gold == label))
        fp = np.sum((predicted == label) & (gold != label))
        fn = np.sum((predicted != label) & (gold == label))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(gold == predicted)), "macro_f1": float(np.mean(f1s))}


@register_head
class ClassificationHead(SequenceHead):
    kind = "classification"
    target_key = "labels"

    def __init__(self, backbone, num_labels: int = 2, pooling: str = "cls", dropout: float = 0.1):
        super().__init__(backbone, num_labels=num_labels, pooling=pooling, dropout=dropout)
        if pooling not in POOLINGS:
            raise UserError(f"unknown pooling '{pooling}' (choose from {', '.join(POOLINGS)})")
        self.pooling = pooling
        self.use_pooler = pooling == "cls" and backbone.has_pooler
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=backbone.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def pool(self, out, batch) -> torch.Tensor:
        hidden = out.last_hidden_state
        mask = batch.get("attention_mask")
        if self.pooling == "cls":
            return out.pooler_output if self.use_pooler else hidden[:, 0]
        if mask is None:
            return hidden[:, -1] if self.pooling == "last" else hidden.mean(dim=1)
        if self.pooling == "mean":
            weights = mask.to(hidden.dtype).unsqueeze(-1)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        # last real token; works for right and left padding alike
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (positions * mask.bool()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def logits(self, out, batch):
        return self.classifier(self.dropout(self.pool(out, batch)))

    def loss_sum(self, out, batch):
        return F.cross_entropy(self.logits(out, batch).float(), batch[self.target_key], reduction="sum")
