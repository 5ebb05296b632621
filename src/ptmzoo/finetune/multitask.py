"""Multi-task fine-tuning (MT-DNN, Liu et al., 2019): one shared encoder, one head per task.

Every optimizer step trains on one batch of one task, the task drawn with probability
proportional to its number of training examples (``proportional``, MT-DNN), to n^(1/T)
(``temperature``: T > 1 lifts small tasks), or equal for all (``uniform``). The dev set of every
task is evaluated (metrics as ``TASK/metric``); the best checkpoint is chosen by the mean of the
tasks' main metrics. ``finetune_after`` then fine-tunes the shared encoder on each task alone.

```yaml
model: runs/bert
tasks:
  sentiment: {task: classification, train_file: senti/train.tsv, dev_file: senti/dev.tsv,
              options: {text_column: text_a}}
  similarity: {task: classification, train_file: afqmc/train.txt, dev_file: afqmc/dev.txt,
               columns: [s1, s2, label], options: {text_column: s1, text_pair_column: s2}}
sampling: temperature
temperature: 2
epochs: 2
finetune_after: {epochs: 1}
```
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..config import Config, TrainConfig
from ..errors import UserError
from ..io import atomic_write_json
from ..loading import load
from ..models.model import PtmModel
from ..train.distributed import setup
from ..train.trainer import Trainer, seed_everything
from .run import FinetuneConfig, FinetuneRun, finetune_defaults, run_finetune
from .strategies import Strategy, StrategyConfig


@dataclass
class MultiTaskConfig(Config):
    model: str = ""
    tasks: dict[str, Any] = field(default_factory=dict)  # name -> FinetuneConfig fields (task, files, options)
    sampling: Literal["proportional", "temperature", "uniform"] = "proportional"
    temperature: float = 2.0
    epochs: float = 1.0  # in batches of all tasks together
    evals_per_epoch: int = 1
    train: TrainConfig = field(default_factory=finetune_defaults)  # batch_size: examples per task batch
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    finetune_after: dict[str, Any] | None = None  # FinetuneConfig fields for per-task fine-tuning afterwards

    def validate(self) -> None:
        if not self.model or len(self.tasks) < 1:
            raise UserError("multi-task fine-tuning needs 'model:' and at least one entry under 'tasks:'")
        if self.temperature <= 0:
            raise UserError("temperature must be positive")

    def task_config(self, name: str, **changes) -> FinetuneConfig:
        spec = self.tasks[name]
        if not isinstance(spec, dict):
            raise UserError(f"tasks.{name} must be a mapping of fine-tuning fields (task, train_file, dev_file ...)")
        return FinetuneConfig.from_dict({"train": self.train.to_dict(), **spec, "model": self.model, **changes})


def task_probabilities(sizes: list[int], sampling: str, temperature: float = 2.0) -> np.ndarray:
    """How often each task's batch is drawn."""
    sizes_ = np.asarray(sizes, dtype=float)
    weights = {"proportional": sizes_, "uniform": np.ones_like(sizes_),
               "temperature": sizes_ ** (1.0 / temperature)}[sampling]
    return weights / weights.sum()


class TaskMixture:
    """Item k = one batch of one task, drawn from (seed, epoch, k) alone, so that any order of the
    items (the Trainer's shuffling, a resumed run) sees the same batches."""

    def __init__(self, samples: list[list[dict]], probabilities: np.ndarray, batch_size: int, length: int, seed: int):
        self.samples, self.probabilities = samples, probabilities
        self.batch_size, self.length, self.seed = batch_size, length, seed

    def __len__(self) -> int:
        return self.length

    def draw(self, index: int, epoch: int = 0) -> tuple[int, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, index])
        task = int(rng.choice(len(self.samples), p=self.probabilities))
        size = len(self.samples[task])
        return task, rng.choice(size, min(self.batch_size, size), replace=False)

    def __getitem__(self, key) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        task, rows = self.draw(index, epoch)
        return {"task": task, "samples": [self.samples[task][i] for i in rows]}


class MultiTaskModel(PtmModel):
    """A PtmModel whose training batches name their task: only that task's head computes a loss."""

    def __init__(self, family, backbone, task_names: list[str]):
        super().__init__(family, backbone)
        self.task_names = task_names

    def _batch_head(self, batch) -> str | None:
        return self.task_names[int(batch["task"][0])] if batch is not None and "task" in batch else None

    def count_targets(self, batch):
        name = self._batch_head(batch)
        return super().count_targets(batch) if name is None else {name: self.heads[name].count_targets(batch)}

    def apply_heads(self, result, out, inputs, targets):
        name = self._batch_head(targets)
        if name is None:
            return super().apply_heads(result, out, inputs, targets)
        head = self.heads[name]
        result.loss_sums[name] = head.loss_sum(out, targets)
        result.loss = result.loss_sums[name] / head.count_targets(targets).clamp(min=1)
        return result


def run_multitask(cfg: MultiTaskConfig, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """Train the shared encoder on all tasks (``out_dir/best``), then optionally each task alone
    (``out_dir/TASK``). ``out_dir/metrics.json`` holds the per-task dev metrics."""
    env = setup(cfg.train.device)
    if env.world_size > 1:
        raise UserError("multi-task fine-tuning runs in one process (each step is one task's batch)")
    source = load(cfg.model)
    names = list(cfg.tasks)
    runs = [FinetuneRun(cfg.task_config(name), source) for name in names]
    for name, run in zip(names, runs):  # each head under its task's name
        run.task = copy.copy(run.task)
        run.task.__class__ = type(type(run.task).__name__, (type(run.task),), {"head_name": name})
    seed_everything(cfg.train.seed)
    model = MultiTaskModel(source.family, copy.deepcopy(source.model.backbone), names)
    for run in runs:
        run.task.add_head(model)
    strategy = Strategy(model, cfg.strategy, source.path)

    batch = cfg.train.batch_size
    sizes = [len(run.train_samples) for run in runs]
    steps_per_epoch = sum(math.ceil(n / batch) for n in sizes)
    mixture = TaskMixture([run.train_samples for run in runs], task_probabilities(sizes, cfg.sampling, cfg.temperature),
                          batch, steps_per_epoch, cfg.train.seed)
    max_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    train = cfg.train.replace(batch_size=1, micro_batch_size=None, max_steps=max_steps, save_every=max_steps,
                              eval_every=max(1, steps_per_epoch // cfg.evals_per_epoch),
                              log_every=min(cfg.train.log_every, max_steps))

    def collate(items):
        (item,) = items  # one task batch per step
        return {**runs[item["task"]].task.collate(item["samples"]), "task": torch.tensor([item["task"]])}

    def evaluate(m):
        metrics: dict[str, float] = {}
        for name, run in zip(names, runs):
            result = run.evaluate(m, run.dev_rows, run.dev_samples, batch, env.device)
            metrics.update({f"{name}/{k}": v for k, v in result.items() if isinstance(v, (int, float))})
        metrics["average"] = float(np.mean([metrics[f"{n}/{r.cfg.selection_metric}"] for n, r in zip(names, runs)]))
        return metrics

    meta = {"tasks": {name: run.task.meta() for name, run in zip(names, runs)}}
    trainer = Trainer(model, mixture, collate, train, out_dir, env, tokenizer=source.tokenizer, extra_meta=meta,
                      evaluate=evaluate, select_metric="average", select_mode="max", progress=progress,
                      **strategy.trainer_kwargs(train.lr, train.weight_decay, steps_per_epoch))
    result = trainer.train()
    best = load(os.path.join(out_dir, "best"))
    report: dict[str, Any] = {"tasks": names, "sampling": cfg.sampling, "task_probabilities":
                              mixture.probabilities.round(4).tolist(), "steps": result.step,
                              "best_step": result.best_step, **strategy.counts(), "dev": evaluate(best.model)}
    if cfg.finetune_after is not None:
        report["finetuned"] = {}
        for name in names:
            task_cfg = cfg.task_config(name, **{**cfg.finetune_after, "model": os.path.join(out_dir, "best")})
            report["finetuned"][name] = run_finetune(task_cfg, os.path.join(out_dir, name), progress=progress)["dev"]
    atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    return report
