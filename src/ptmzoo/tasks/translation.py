"""Translation (and any text-to-text generation): teacher-forced training of an encoder-decoder
with a label-smoothed cross-entropy, beam-search decoding and corpus BLEU (``sacrebleu``). A UniLM
checkpoint is fine-tuned the UniLM way instead (``generation.unilm``): source and target in one
sequence under the seq2seq mask, masked target tokens predicted by the MLM head.

Rows have a source and a target column (``--source-column``, ``--target-column``): a TSV such as
``paste train.en train.de`` with ``--columns en,de``. The source is encoded with the tokenizer's
template (``<s> ... </s>``); the target is its tokens and the end-of-sequence token, and the
decoder reads it shifted right behind the model's decoder start token (teacher forcing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import setting
from ..errors import UserError
from ..generation.unilm import generate_unilm, seq2seq_batch
from ..models.seq2seq import Seq2SeqLMHead
from ..models.unilm import UnilmModel
from ..objectives.mlm import MLMHead
from .base import Task, TaskOptions, pad
from .tables import read_table


@dataclass
class TargetTextOptions(TaskOptions):
    """Tasks that generate their target text (an encoder-decoder or UniLM)."""

    target_column: str = setting("target", help="the target text")
    num_beams: int = setting(4, help="beam size when predicting")
    label_smoothing: float = setting(0.1, help="label smoothing eps of the training loss")

    def validate(self) -> None:
        super().validate()
        if self.num_beams < 1 or not 0 <= self.label_smoothing < 1:
            raise UserError("--num-beams must be at least 1 and --label-smoothing in [0, 1)")


@dataclass
class TranslationOptions(TargetTextOptions):
    """Translation: a source and a target column."""

    source_column: str = setting("source", help="the source text")


class TranslationTask(Task):
    name = "translation"
    Options = TranslationOptions
    metric_names = ("bleu",)
    prediction_suffix = ".tsv"

    def __init__(self, options, tokenizer, labels, max_positions):
        super().__init__(options, tokenizer, labels, max_positions)
        self.end_id = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.role_id("sep")  # UniLM: [SEP]
        if self.end_id is None:
            raise UserError("translation needs a tokenizer with an end-of-sequence or [SEP] token")
        self.start_id = tokenizer.bos_id if tokenizer.bos_id is not None else self.pad_id  # the model's, once known
        self.unified = False  # a UniLM backbone (set by add_head)
        self.rng = np.random.default_rng(0)  # UniLM's target masks

    @property
    def head_name(self) -> str:
        return "unilm" if self.unified else "seq2seq_lm"

    @property
    def head(self) -> type:
        return MLMHead if self.unified else Seq2SeqLMHead

    @classmethod
    def read(cls, path: str, options, fmt: str = "auto", columns: list[str] | None = None) -> list[dict]:
        rows = read_table(path, fmt, columns)
        if options.source_column not in rows[0]:
            raise UserError(f"{path} has no source column '{options.source_column}' (columns: "
                            f"{', '.join(rows[0])}); set --source-column, or --columns for a file without a header")
        return rows

    def has_labels(self, rows: list[dict]) -> bool:
        return self.options.target_column in rows[0]

    def encode(self, rows: list[dict], path: str, with_labels: bool = True) -> list[dict]:
        opts = self.options
        if with_labels and opts.target_column not in rows[0]:
            raise UserError(f"{path} has no target column '{opts.target_column}'; set --target-column")
        targets = [r[opts.target_column] for r in rows] if with_labels else None
        return self.encode_texts([r[opts.source_column] for r in rows], targets)

    def encode_texts(self, sources: list[str], targets: list[str] | None) -> list[dict]:
        """Samples: the source with the tokenizer's template and, given targets, the target's
        tokens and the end token as ``labels``."""
        source_ids = self.tokenizer.encode_batch(sources, max_length=self.max_length)
        if targets is None:
            return [{"input_ids": ids} for ids in source_ids]
        target_ids = self.tokenizer.encode_batch(targets, add_special_tokens=False)
        return [{"input_ids": ids, "labels": target[: self.max_length - 1] + [self.end_id]}
                for ids, target in zip(source_ids, target_ids)]

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        ids = [s["input_ids"] for s in samples]
        if self.unified:
            return seq2seq_batch(ids, [s["labels"] for s in samples], self.tokenizer.mask_id, self.pad_id, self.rng)
        batch = {"input_ids": pad(ids, self.pad_id), "attention_mask": pad([[1] * len(i) for i in ids], 0)}
        if "labels" in samples[0]:
            labels = [s["labels"] for s in samples]
            batch["decoder_input_ids"] = pad([[self.start_id] + t[:-1] for t in labels], self.pad_id)
            batch["seq2seq_labels"] = pad(labels, -100)
        return batch

    # ---- model --------------------------------------------------------------------------------
    def add_head(self, model) -> None:
        self.unified = isinstance(model.backbone, UnilmModel)
        if not self.unified and not model.backbone.is_encoder_decoder:
            raise UserError(f"{self.name} trains an encoder-decoder or UniLM; this checkpoint is a {model.family} "
                            "model")
        if self.unified and self.tokenizer.mask_id is None:
            raise UserError("UniLM fine-tuning masks target tokens; the tokenizer has no mask token")
        if not self.unified:
            self.start_id = model.backbone.decoder_start_id
        super().add_head(model)

    def head_options(self, backbone) -> dict[str, Any]:
        return {} if self.unified else {"label_smoothing": self.options.label_smoothing}

    def predict(self, model, samples: list[dict], batch_size: int, device) -> list[str]:
        return self.generate_texts(model, samples, batch_size, num_beams=self.options.num_beams,
                                   max_new_tokens=self.max_length)

    def generate_texts(self, model, samples: list[dict], batch_size: int, **options) -> list[str]:
        """The generated text of each sample, in batches; ``options``: ``GenerationOptions`` fields."""
        from ..generation.seq2seq import generate_seq2seq

        generate = generate_unilm if isinstance(model.backbone, UnilmModel) else generate_seq2seq
        texts: list[str] = []
        for start in range(0, len(samples), batch_size):
            sources = [s["input_ids"] for s in samples[start : start + batch_size]]
            out = generate(model, sources, self.tokenizer, eos_token_id=self.end_id, **options)
            texts += [text.strip() for text in out.texts]
        return texts

    def evaluate(self, rows: list[dict], samples: list[dict], outputs: list[str]) -> dict[str, float]:
        import sacrebleu

        references = [r[self.options.target_column] for r in rows]
        return {"bleu": sacrebleu.corpus_bleu(outputs, [references]).score}

    def write_predictions(self, path: str, rows: list[dict], samples: list[dict], outputs: list[str]) -> None:
        from ..io import atomic_write_text

        source = self.options.source_column
        lines = [f"{r[source]}\t{hypothesis}\n" for r, hypothesis in zip(rows, outputs)]
        atomic_write_text(path, f"source\ttranslation\n{''.join(lines)}")
