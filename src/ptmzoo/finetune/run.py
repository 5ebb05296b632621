"""Fine-tune a checkpoint on a labelled task: train, select the best model on the dev set, write
``metrics.json`` and predictions."""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Pretrained, load
from ..config import Config, TrainConfig
from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text
from ..models.model import PtmModel
from ..tasks.classification import ClassificationOptions, ClassificationTask, ListDataset, classification_metrics, label_vocabulary
from ..tasks.tables import read_table, require_columns
from ..train.distributed import setup
from ..train.trainer import Trainer, seed_everything


def finetune_defaults() -> TrainConfig:
    return TrainConfig(batch_size=32, lr=5e-5, warmup_ratio=0.1, weight_decay=0.01, log_every=10)


@dataclass
class FinetuneConfig(Config):
    model: str = ""  # checkpoint directory
    train_file: str = ""
    dev_file: str = ""
    test_file: str | None = None
    task: Literal["classification"] = "classification"
    format: str = "auto"
    columns: list[str] | None = None  # names for the columns of header-less TSV/CSV files
    epochs: float = 3.0
    evals_per_epoch: int = 1
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    max_train_examples: int | None = None  # a label budget: a seeded random subset of the training file
    from_scratch: bool = False  # same architecture and tokenizer, random weights (a baseline)
    options: ClassificationOptions = field(default_factory=ClassificationOptions)
    train: TrainConfig = field(default_factory=finetune_defaults)

    def validate(self) -> None:
        for name in ("model", "train_file", "dev_file"):
            if not getattr(self, name):
                raise UserError(f"finetune needs --{name.replace('_', '-')}")
        if self.epochs <= 0:
            raise UserError("--epochs must be positive")


def prepare_model(source: Pretrained, num_labels: int, from_scratch: bool, seed: int,
                  pooling: str | None = None) -> PtmModel:
    """The checkpoint's backbone (or a freshly initialised twin) with a classification head."""
    backbone = copy.deepcopy(source.model.backbone)  # the source stays intact for other runs
    if from_scratch:
        seed_everything(seed)
        backbone = type(backbone)(backbone.config)
    seed_everything(seed)
    model = PtmModel(source.family, backbone)
    model.add_head("classification", "classification", num_labels=num_labels,
                   pooling=pooling or ("last" if backbone.causal else "cls"))
    return model


class ClassificationRun:
    """Data, task and model of one fine-tuning run (kept separate from the loop for reuse)."""

    def __init__(self, cfg: FinetuneConfig, source: Pretrained | None = None):
        self.cfg = cfg
        self.source = source or load(cfg.model)
        if self.source.tokenizer is None:
            raise UserError(f"{cfg.model} has no tokenizer files; fine-tuning needs the model's tokenizer")
        opts = cfg.options
        self.train_rows = read_table(cfg.train_file, cfg.format, cfg.columns)
        require_columns(self.train_rows, cfg.train_file, {"label_column": opts.label_column})
        if cfg.max_train_examples is not None and cfg.max_train_examples < len(self.train_rows):
            order = np.random.default_rng(cfg.train.seed).permutation(len(self.train_rows))
            self.train_rows = [self.train_rows[i] for i in order[: cfg.max_train_examples]]
        self.dev_rows = read_table(cfg.dev_file, cfg.format, cfg.columns)
        self.test_rows = read_table(cfg.test_file, cfg.format, cfg.columns) if cfg.test_file else None
        labels = label_vocabulary(r[opts.label_column] for r in self.train_rows)
        if len(labels) < 2:
            raise UserError(f"{cfg.train_file} has only one label ({labels[0]}); classification needs two or more")
        config = self.source.model.config
        self.task = ClassificationTask(opts, self.source.tokenizer, labels, config.max_position_embeddings)
        self.train_samples = self.task.encode(self.train_rows, cfg.train_file)
        self.dev_samples = self.task.encode(self.dev_rows, cfg.dev_file)
        self.test_samples = None
        if self.test_rows is not None:
            has_labels = opts.label_column in self.test_rows[0]
            self.test_samples = self.task.encode(self.test_rows, cfg.test_file, with_labels=has_labels)
        self.model = prepare_model(self.source, len(labels), cfg.from_scratch, cfg.train.seed, opts.pooling)

    def evaluate(self, model: nn.Module, samples: list[dict], batch_size: int, device) -> dict[str, Any]:
        probs = self.task.predict(model, samples, batch_size, device)
        gold = np.asarray([s["labels"] for s in samples])
        metrics = classification_metrics(gold, probs.argmax(-1))
        nll = F.nll_loss(torch.log(torch.from_numpy(probs).clamp(min=1e-12)), torch.from_numpy(gold))
        metrics["eval_loss"] = float(nll)
        return metrics

    def task_meta(self) -> dict[str, Any]:
        head = self.model.heads["classification"]
        return {"name": "classification", "labels": self.task.labels, "options": self.cfg.options.to_dict(),
                "pooling": head.pooling}


def evaluate_classifier(classifier: Pretrained, path: str, fmt: str = "auto", columns: list[str] | None = None,
                        batch_size: int = 32) -> dict[str, Any]:
    """Accuracy and macro-F1 of a fine-tuned classifier checkpoint on a labelled file."""
    task_meta = classifier.task
    if not task_meta or task_meta.get("name") != "classification":
        raise UserError(f"{classifier.path} is not a fine-tuned classifier")
    options = ClassificationOptions.from_dict(task_meta["options"])
    task = ClassificationTask(options, classifier.tokenizer, task_meta["labels"],
                              classifier.model.config.max_position_embeddings)
    samples = task.encode(read_table(path, fmt, columns), path)
    device = next(classifier.model.parameters()).device
    probs = task.predict(classifier.model, samples, batch_size, device)
    metrics = classification_metrics(np.asarray([s["labels"] for s in samples]), probs.argmax(-1))
    metrics["examples"] = len(samples)
    return metrics


def write_predictions(path: str, run: ClassificationRun, rows: list[dict], probs: np.ndarray) -> None:
    opts = run.cfg.options
    columns = [opts.text_column] + ([opts.text_pair_column] if opts.text_pair_column else [])
    has_gold = opts.label_column in rows[0]
    header = columns + (["label"] if has_gold else []) + ["prediction", "confidence"]
    lines = ["\t".join(header)]
    for row, p in zip(rows, probs):
        cells = [str(row[c]).replace("\t", " ").replace("\n", " ") for c in columns]
        if has_gold:
            cells.append(str(row[opts.label_column]))
        cells += [run.task.labels[int(p.argmax())], f"{float(p.max()):.4f}"]
        lines.append("\t".join(cells))
    atomic_write_text(path, "\n".join(lines) + "\n")


def run_finetune(cfg: FinetuneConfig, out_dir: str, resume: str | bool | None = None, progress: bool = True,
                 source: Pretrained | None = None) -> dict[str, Any]:
    """Train, keep the best dev checkpoint in ``out_dir/best``, and report dev (and test) metrics."""
    started = time.time()
    env = setup(cfg.train.device)
    run = ClassificationRun(cfg, source)
    train = cfg.train
    steps_per_epoch = math.ceil(len(run.train_samples) / train.batch_size)
    max_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    train = train.replace(max_steps=max_steps, eval_every=eval_every, save_every=max_steps,
                          log_every=min(train.log_every, max_steps))
    micro = train.micro_batch_size or train.batch_size // env.world_size

    def evaluate(model):
        return run.evaluate(model, run.dev_samples, micro, env.device)

    trainer = Trainer(run.model, ListDataset(run.train_samples), run.task.collate, train, out_dir, env,
                      tokenizer=run.source.tokenizer, extra_meta={"task": run.task_meta()}, evaluate=evaluate,
                      select_metric=cfg.metric, select_mode="max", progress=progress)
    result = trainer.train(resume)
    report: dict[str, Any] = {"task": "classification", "labels": run.task.labels,
                              "train_examples": len(run.train_samples), "steps": result.step,
                              "best_step": result.best_step, "selected_by": cfg.metric}
    if env.is_main:
        best = load(os.path.join(out_dir, "best"), device=env.device)
        dev_probs = run.task.predict(best.model, run.dev_samples, micro, env.device)
        report["dev"] = run.evaluate(best.model, run.dev_samples, micro, env.device)
        write_predictions(os.path.join(out_dir, "predictions.dev.tsv"), run, run.dev_rows, dev_probs)
        if run.test_samples is not None:
            test_probs = run.task.predict(best.model, run.test_samples, micro, env.device)
            if "labels" in run.test_samples[0]:
                report["test"] = run.evaluate(best.model, run.test_samples, micro, env.device)
            write_predictions(os.path.join(out_dir, "predictions.test.tsv"), run, run.test_rows, test_probs)
        report["elapsed_s"] = round(time.time() - started, 2)
        atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    env.barrier()
    return report
