"""Fine-tune a checkpoint on a labelled task: train, select the best model on the dev set, write
``metrics.json`` and predictions. The task (``--task``) comes from the registry in
``ptmzoo.tasks``; this loop knows nothing task-specific."""

from __future__ import annotations

import copy
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..catalog import build_model
from ..checkpoint import Pretrained
from ..compress.recorded import training_constraints
from ..config import Config, TrainConfig, check_choice, setting
from ..errors import UserError
from ..io import atomic_write_json
from ..loading import load
from ..models.model import PtmModel
from ..tasks import TASKS, Task, TaskOptions, task_class, task_of, task_options
from ..tasks.base import ListDataset
from ..tasks.tables import reading
from ..textio import ENCODING_HELP, check_encoding
from ..train.diagnostics import report_warnings, training_loss_warnings
from ..train.distributed import setup
from ..train.trainer import Trainer, autocast_context, seed_everything
from ..vectors.embeddings import init_embeddings
from .lr import RULE, default_grid, lr_for_width, trial_dir
from .strategies import Strategy, StrategyConfig, export_merged


def finetune_defaults() -> TrainConfig:
    return TrainConfig(batch_size=32, lr=5e-5, warmup_ratio=0.1, weight_decay=0.01, log_every=10)


DATA_FORMATS = ("auto", "tsv", "csv", "jsonl", "conll", "text")  # text: predict's plain sentences, one a line
LR_CHOICES = ("rule", "given", "auto")  # lr_choice: by the model's width, train.lr as written, a dev-set grid


@dataclass
class FinetuneConfig(Config):
    model: str = setting("", required=True, help="checkpoint directory")
    train_file: str = setting("", flag="--train", required=True,
                              help="training file (TSV, CSV, JSONL; CoNLL or CLUENER JSON for tagging; SQuAD JSON "
                                   "for qa)")
    dev_file: str = setting("", flag="--dev", required=True, help="dev file: model selection and metrics")
    test_file: str | None = setting(None, flag="--test", help="optional test file: metrics and predictions")
    task: str = setting("classification", choices=tuple(TASKS),
                        help="what to learn: the files it reads, its head, loss and metrics")
    format: str = setting("auto", choices=DATA_FORMATS,
                          help="data format (auto: by extension; conll = token ... tag columns; text = one "
                               "sentence a line, for predict with a tagging model)")
    columns: list[str] | None = setting(None, help="comma-separated column names for files without a header row")
    keep_columns: list[str] | None = setting(None, help="TSV/CSV: read only these columns (comma-separated); rows "
                                                        "with more fields than the header then drop the extra "
                                                        "fields at their end")
    encoding: str = setting("utf-8", help=ENCODING_HELP)
    epochs: float = setting(3.0, help="passes over the training file")
    evals_per_epoch: float = setting(1.0, flag=False, help="dev evaluations per epoch, e.g. 4, or 0.25 for one every "
                                                           "4 epochs (config and overrides only)")
    metric: str | None = setting(None, help="dev metric that selects the best checkpoint and the rate of --lr auto "
                                            "(default: the task's main one: accuracy, pearson, micro_f1, f1, f1 "
                                            "(qa), accuracy, bleu, score (text2text)); two classes (MRPC, QQP): "
                                            "f1 of the positive class, accuracy_f1 their mean")
    max_train_examples: int | None = setting(None, help="use a seeded random subset of the training file "
                                                        "(a label budget; default: all of it)")
    from_scratch: bool = setting(False, help="random weights, same architecture (baseline)")
    options: TaskOptions | None = None  # the task's options (Task.Options); None: its defaults
    train: TrainConfig = field(default_factory=finetune_defaults)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)  # full/frozen/adapters/LoRA, ULMFiT
    patience: int | None = setting(None, help="early stopping: evaluations without a better dev metric "
                                              "(default: none, every epoch runs)")
    runs: int = setting(1, help="K runs with seeds seed..seed+K-1; reports mean ± std")
    init_embeddings: str | None = setting(None, metavar="DIR", help="word vectors (`ptmzoo vectors train --out "
                                          "DIR`) for the token embeddings of the words both vocabularies share")
    lr_choice: str = setting("rule", flag=False, choices=LR_CHOICES,
                             help="how the learning rate is chosen: rule (by the model's width; the default when "
                                  "train.lr is not given), given (train.lr), auto (--lr auto: a grid on the dev set)")
    lr_grid: list[float] | None = setting(None, metavar="LR,LR,...",
                                          help="learning rates --lr auto tries (default: the width rule's rate "
                                               "/3, x1, x3)")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = ""):
        """The ``options`` mapping is read by the chosen task's options class."""
        data = dict(data or {})
        if "lr_choice" not in data:  # a learning rate written down is used; a grid alone asks for the search
            train = data.get("train")
            given = "lr" in train if isinstance(train, dict) else isinstance(train, TrainConfig)
            data["lr_choice"] = "auto" if data.get("lr_grid") and not given else "given" if given else "rule"
        if not isinstance(data.get("options"), TaskOptions):
            task = str(data.get("task", cls.task))
            data["options"] = task_options(task, data.get("options"), where + "options.")
        return super().from_dict(data, where)

    def __post_init__(self) -> None:
        if self.options is None:
            self.options = task_class(self.task).Options()

    def validate(self) -> None:
        check_choice(self.lr_choice, LR_CHOICES, "lr_choice")
        for name in ("model", "train_file", "dev_file"):
            if not getattr(self, name):
                raise UserError(f"finetune needs --{name.replace('_', '-')}")
        check_encoding(self.encoding)
        if self.epochs <= 0:
            raise UserError("--epochs must be positive")
        if self.evals_per_epoch <= 0:
            raise UserError(f"evals_per_epoch must be positive, not {self.evals_per_epoch:g}")
        for name in ("max_train_examples", "patience", "runs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.from_scratch and self.strategy.method != "full":
            raise UserError(f"--from-scratch trains every weight; it cannot be combined with --strategy "
                            f"{self.strategy.method}")
        task = task_class(self.task)
        if not isinstance(self.options, task.Options):
            raise UserError(f"the {self.task} task reads {task.Options.__name__}, not {type(self.options).__name__}")
        if self.lr_grid is not None and self.lr_choice != "auto":
            raise UserError("--lr-grid is the grid of --lr auto; give --lr auto, or one --lr")
        metrics = task.metric_names
        if self.metric is not None and self.metric not in metrics:
            raise UserError(f"the {self.task} task has no metric '{self.metric}' (choose from {', '.join(metrics)})")

    @property
    def selection_metric(self) -> str:
        return self.metric or task_class(self.task).metric_names[0]


def prepare_model(source: Pretrained, task: Task, from_scratch: bool, seed: int) -> PtmModel:
    """The checkpoint's backbone (or a freshly initialised twin) with the task's head."""
    backbone = copy.deepcopy(source.model.backbone)  # the source stays intact for other runs
    if from_scratch:
        seed_everything(seed)
        backbone = type(backbone)(backbone.config)
    seed_everything(seed)
    model = build_model(source.family, backbone=backbone)  # the family's wrapper (encoder-decoders: Seq2SeqModel)
    task.add_head(model)
    return model


class FinetuneRun:
    """Data, task and model of one fine-tuning run (kept separate from the loop for reuse).
    ``augment`` maps the training rows to more rows (distillation's data augmentation)."""

    def __init__(self, cfg: FinetuneConfig, source: Pretrained | None = None,
                 augment: Callable[[list[dict]], list[dict]] | None = None):
        self.cfg = cfg
        self.source = source or load(cfg.model)
        if self.source.tokenizer is None:
            raise UserError(f"{cfg.model} has no tokenizer files; fine-tuning needs the model's tokenizer")
        training_constraints(self.source.model, self.source.meta, cfg.model)  # refused before reading any data
        opts, cls = cfg.options, task_class(cfg.task)
        with reading(cfg.encoding, cfg.keep_columns):
            self.train_rows = cls.read(cfg.train_file, opts, cfg.format, cfg.columns)
            self.dev_rows = cls.read(cfg.dev_file, opts, cfg.format, cfg.columns)
            self.test_rows = cls.read(cfg.test_file, opts, cfg.format, cfg.columns) if cfg.test_file else None
        if cfg.max_train_examples is not None and cfg.max_train_examples < len(self.train_rows):
            order = np.random.default_rng(cfg.train.seed).permutation(len(self.train_rows))
            self.train_rows = [self.train_rows[i] for i in order[: cfg.max_train_examples]]
        if augment is not None:
            self.train_rows = augment(self.train_rows)
        labels = cls.infer_labels(self.train_rows, opts, cfg.train_file)
        self.task = cls(opts, self.source.tokenizer, labels, self.source.model.backbone.max_length)
        if cfg.selection_metric not in self.task.available_metrics():
            raise UserError(f"--metric {cfg.selection_metric} needs two classes; {cfg.train_file} has "
                            f"{len(labels)} ({', '.join(self.task.available_metrics())} can select the checkpoint)")
        self.train_samples = self.task.encode(self.train_rows, cfg.train_file)
        self.dev_samples = self.task.encode(self.dev_rows, cfg.dev_file)
        self.test_samples = None
        if self.test_rows is not None:
            self.test_samples = self.task.encode(self.test_rows, cfg.test_file,
                                                 with_labels=self.task.has_labels(self.test_rows))
        self.model = prepare_model(self.source, self.task, cfg.from_scratch, cfg.train.seed)
        self.embeddings_initialised = (init_embeddings(self.model.backbone, self.source.tokenizer, cfg.init_embeddings)
                                       if cfg.init_embeddings else None)
        self.strategy = Strategy(self.model, cfg.strategy, self.source.path)

    def evaluate(self, model: nn.Module, rows: list[dict], samples: list[dict], batch_size: int, device,
                 predictions: str | None = None, warnings: list[str] | None = None,
                 reports: dict | None = None) -> dict[str, Any]:
        """Metrics of ``model`` on labelled rows; the predictions are written too when a path is
        given, and the task's signs of a model that learned nothing are added to ``warnings``. With
        ``reports`` (a dict) the task's report files go beside the predictions (``Task.write_reports``)
        and their entries into ``reports``."""
        outputs = self.task.predict(model, samples, batch_size, device)
        if predictions:
            self.task.write_predictions(predictions, rows, samples, outputs)
            if reports is not None:
                reports.update(self.task.write_reports(os.path.dirname(predictions) or ".", rows, samples, outputs))
        metrics = self.task.evaluate(rows, samples, outputs)
        if warnings is not None:
            warnings += self.task.warnings(rows, samples, outputs, metrics)
        return metrics

    def learning_rate(self) -> tuple[float, str]:
        """The peak learning rate of this run and how it was chosen (``lr_choice``)."""
        if self.cfg.lr_choice == "given":
            return self.cfg.train.lr, "given"
        width = self.source.model.backbone.config.hidden_size
        return lr_for_width(width), f"rule: hidden size {width} -> {lr_for_width(width):g} ({RULE})"

    def task_meta(self) -> dict[str, Any]:
        return self.task.meta()


ClassificationRun = FinetuneRun  # the name before the task registry


def evaluate_file(pretrained: Pretrained, path: str, fmt: str = "auto", columns: list[str] | None = None,
                  batch_size: int = 32, encoding: str | None = None,
                  keep_columns: list[str] | None = None, reports_dir: str | None = None,
                  reports_prefix: str = "") -> dict[str, Any]:
    """The task's metrics of a fine-tuned checkpoint on a labelled file; with ``reports_dir`` the
    task's report files (``Task.write_reports``, names after ``reports_prefix``) are written there
    and their entries added."""
    task = task_of(pretrained)
    with reading(encoding, keep_columns):
        rows = task.read(path, task.options, fmt, columns)
    samples = task.encode(rows, path)
    outputs = task.predict(pretrained.model, samples, batch_size, next(pretrained.model.parameters()).device)
    reports = {} if reports_dir is None else task.write_reports(reports_dir, rows, samples, outputs, reports_prefix)
    return {**task.evaluate(rows, samples, outputs), "examples": len(rows), **reports}


evaluate_classifier = evaluate_file  # the name before the task registry (used by the demo)


def predict_file(pretrained: Pretrained, path: str, out: str, fmt: str = "auto", columns: list[str] | None = None,
                 batch_size: int = 32, encoding: str | None = None, keep_columns: list[str] | None = None) -> int:
    """Write the predictions of a fine-tuned checkpoint for ``path`` (gold labels not needed) to ``out``."""
    task = task_of(pretrained)
    with reading(encoding, keep_columns):
        rows = task.read_inputs(path, fmt, columns)
    samples = task.encode(rows, path, with_labels=False)
    outputs = task.predict(pretrained.model, samples, batch_size, next(pretrained.model.parameters()).device)
    task.write_predictions(out, rows, samples, outputs)
    return len(rows)


def write_test(task: Task, model: nn.Module, rows: list[dict], samples: list[dict], batch_size: int, device,
               out_dir: str) -> dict[str, Any]:
    """Predictions of ``model`` for the test rows in ``out_dir``; ``{"test": metrics}`` when they have labels."""
    outputs = task.predict(model, samples, batch_size, device)
    task.write_predictions(os.path.join(out_dir, f"predictions.test{task.prediction_suffix}"), rows, samples, outputs)
    if not task.has_labels(rows):
        return {}
    return {"test": task.evaluate(rows, samples, outputs), **task.write_reports(out_dir, rows, samples, outputs)}


def test_report(best: Pretrained, cfg: FinetuneConfig, out_dir: str) -> dict[str, Any]:
    """``write_test`` for a fine-tuned checkpoint and ``cfg.test_file`` (what ``--lr auto`` does
    once, with the chosen model)."""
    task = task_of(best)
    with reading(cfg.encoding, cfg.keep_columns):
        rows = task.read(cfg.test_file, task.options, cfg.format, cfg.columns)
    samples = task.encode(rows, cfg.test_file, with_labels=task.has_labels(rows))
    return write_test(task, best.model, rows, samples, cfg.train.batch_size, next(best.model.parameters()).device,
                      out_dir)


def run_finetune(cfg: FinetuneConfig, out_dir: str, resume: str | bool | None = None, progress: bool = True,
                 source: Pretrained | None = None, *, run: FinetuneRun | None = None, objectives: list | None = None,
                 trainer_options: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, keep the best dev checkpoint in ``out_dir/best``, and report dev (and test) metrics.

    Compression runs reuse this loop: ``run`` (a prepared ``FinetuneRun``, its model changed),
    ``objectives`` with a training step of their own (a distillation teacher), Trainer options
    (``after_step``, ``write_model``) and ``meta`` (entries of ``ptmzoo.json`` and the report). A
    compressed source keeps what its ``ptmzoo.json`` records (a pruned model its zeros: compress.recorded).

    The learning rate is ``train.lr`` when given, else the width rule's (``finetune.lr``);
    ``lr_choice: auto`` (``--lr auto``) runs ``search_lr`` instead: one run per rate, chosen on dev.
    ``metrics.json`` lists ``warnings``: signs that the model learned nothing (``Task.warnings``,
    a training loss that did not fall)."""
    started = time.time()
    if cfg.lr_choice == "auto":
        if run is not None or objectives or trainer_options or meta:
            raise UserError("--lr auto is a search over plain fine-tuning runs; give the compression verbs one --lr")
        if resume:
            raise UserError("--lr auto runs several fine-tunings and cannot resume one; start it again with "
                            "--overwrite, or give the chosen --lr and --resume")
        report = search_lr(cfg, out_dir, source=source, progress=progress)
        report["elapsed_s"] = round(time.time() - started, 2)
        atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
        return report
    env = setup(cfg.train.device)
    run = run or FinetuneRun(cfg, source)
    lr, lr_source = run.learning_rate()
    train = cfg.train.replace(lr=lr)
    steps_per_epoch = math.ceil(len(run.train_samples) / train.batch_size)
    meta = dict(meta or {})
    options = run.strategy.trainer_kwargs(lr, train.weight_decay, steps_per_epoch)
    after_step, carried = training_constraints(run.model, run.source.meta, cfg.model)  # a pruned model's zeros
    if after_step is not None and not carried.keys() & meta.keys():
        options["after_step"] = after_step
        meta.update(carried)
    options.update(trainer_options or {})
    max_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = max(1, round(steps_per_epoch / cfg.evals_per_epoch))
    train = train.replace(max_steps=max_steps, eval_every=eval_every, save_every=max_steps,
                          log_every=min(train.log_every, max_steps))
    micro = train.micro_batch_size or train.batch_size // env.world_size

    def evaluate(model):
        return run.evaluate(model, run.dev_rows, run.dev_samples, micro, env.device)

    hooks = [hook for hook in (options.get("before_step"), run.task.schedule(run.model, steps_per_epoch)) if hook]
    if hooks:  # the strategy's unfreezing and the task's own schedule (SiATL's auxiliary LM weight)
        options["before_step"] = lambda step: [hook(step) for hook in hooks]
    trainer = Trainer(run.model, ListDataset(run.train_samples), run.task.collate, train, out_dir, env,
                      tokenizer=run.source.tokenizer, extra_meta={"task": run.task_meta(), **meta}, evaluate=evaluate,
                      select_metric=cfg.selection_metric, select_mode="max", progress=progress,
                      patience=cfg.patience, objectives=objectives, **options)
    result = trainer.train(resume)
    report: dict[str, Any] = {"task": cfg.task, "labels": run.task.labels,
                              "train_examples": len(run.train_rows), "steps": result.step,
                              "best_step": result.best_step, "selected_by": cfg.selection_metric,
                              "lr": lr, "lr_choice": lr_source,
                              "stopped_early": result.stopped_early, **run.strategy.counts(), **meta}
    if run.embeddings_initialised is not None:
        report["embeddings_initialised"] = run.embeddings_initialised
    if env.is_main:
        warnings: list[str] = []
        with autocast_context(train.precision, env.device)():  # evaluated in the precision it trained in
            _evaluate_best(cfg, run, out_dir, micro, env, report, warnings)
        warnings += training_loss_warnings(os.path.join(out_dir, "metrics.jsonl"), "the fine-tuning")
        report["warnings"] = report_warnings(warnings, os.path.join(out_dir, "metrics.jsonl"), result.step)
        report["elapsed_s"] = round(time.time() - started, 2)
        atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    env.barrier()
    return report


def _evaluate_best(cfg: FinetuneConfig, run: FinetuneRun, out_dir: str, micro: int, env, report: dict,
                   warnings: list[str]) -> None:
    """Dev (and test) metrics and predictions of the run's best checkpoint, into ``report``; the
    task's signs of a model that learned nothing into ``warnings``."""
    best = load(os.path.join(out_dir, "best"), device=env.device)
    suffix = run.task.prediction_suffix
    labelled_test = run.test_samples is not None and run.task.has_labels(run.test_rows)
    reports: dict = {}  # the report files are of the test split when it has labels, else of dev
    report["dev"] = run.evaluate(best.model, run.dev_rows, run.dev_samples, micro, env.device,
                                 os.path.join(out_dir, f"predictions.dev{suffix}"), warnings,
                                 None if labelled_test else reports)
    report.update(reports)
    if run.test_samples is not None:
        report.update(write_test(run.task, best.model, run.test_rows, run.test_samples, micro, env.device, out_dir))
    if cfg.strategy.merge_lora:
        export_merged(best, os.path.join(out_dir, "merged"))


def search_lr(cfg, out_dir: str, grid: list[float] | None = None, *, source=None, progress: bool = True,
              keep_trials: bool = False) -> dict[str, Any]:
    """Fine-tune ``cfg`` once per learning rate of ``grid`` (default: ``cfg.lr_grid``, else the
    rule's grid for the model's width), each run in ``OUT/lr_search/lr_X``; choose the rate by the
    dev selection metric only; move the chosen run's best checkpoint and dev predictions to
    ``OUT``; evaluate the test file (if any) once, with the chosen model. Returns the chosen run's
    report with ``lr`` and ``lr_search`` (the grid, each trial's dev metrics and best step, the
    chosen rate); ``keep_trials`` keeps every trial's checkpoints (else only the chosen model)."""
    source = source or load(cfg.model)
    if grid is None:
        grid = list(cfg.lr_grid or default_grid(source.model.backbone.config.hidden_size))
    if not grid or any(not (lr > 0 and math.isfinite(lr)) for lr in grid):
        raise UserError(f"--lr-grid needs positive learning rates, not {grid}")
    metric = cfg.selection_metric
    trials = []
    for lr in grid:
        one = cfg.replace(lr_choice="given", lr_grid=None, test_file=None, runs=1, train=cfg.train.replace(lr=lr))
        directory = trial_dir(out_dir, lr)
        report = run_finetune(one, directory, progress=progress, source=source)
        trials.append({"lr": lr, "dev": report["dev"], "best_step": report["best_step"],
                       "warnings": report.get("warnings", []), "elapsed_s": report.get("elapsed_s"),
                       "run_dir": directory, "report": report})
    chosen = max(trials, key=lambda t: t["dev"][metric])  # dev only; a tie keeps the smaller (earlier) rate
    best_dir = os.path.join(out_dir, "best")
    if os.path.exists(best_dir):
        shutil.rmtree(best_dir)
    if keep_trials:
        shutil.copytree(os.path.join(chosen["run_dir"], "best"), best_dir)
    else:
        os.replace(os.path.join(chosen["run_dir"], "best"), best_dir)
    for name in os.listdir(chosen["run_dir"]):
        if name.startswith("predictions.dev"):
            shutil.copyfile(os.path.join(chosen["run_dir"], name), os.path.join(out_dir, name))
    if not keep_trials:
        for trial in trials:  # resume states and the models not chosen
            for name in ("checkpoints", "best"):
                shutil.rmtree(os.path.join(trial["run_dir"], name), ignore_errors=True)
    report = {**chosen["report"], "lr": chosen["lr"]}
    report["lr_search"] = {
        "grid": list(grid), "selected_by": metric, "chosen_lr": chosen["lr"],
        "trials": [{k: v for k, v in t.items() if k != "report"} for t in trials],
    }
    if cfg.test_file:
        report.update(test_report(load(best_dir), cfg, out_dir))
    return report
