"""Fine-tuning experiments made of several runs: K seeds with mean ± std, and two-stage transfer.

Two-stage transfer (one recipe): first adapt the model -- continued pre-training on unlabelled
in-domain or task text (domain/task-adaptive pre-training), or an intermediate labelled task --
then fine-tune on the target task. Each stage starts from the previous stage's model:

```yaml
model: runs/bert                      # where the first stage starts
stages:
  - name: dapt                        # continued pre-training (train/pretrain.py)
    pretrain:
      corpus: [reviews.txt]           # tokenized with the model's own tokenizer; or data: {shards: DIR}
      objectives: {mlm: {}}
      train: {max_steps: 2000, lr: 1.0e-4, batch_size: 64}
  - name: target                      # any FinetuneConfig fields (task, files, strategy, epochs ...)
    finetune: {train_file: train.tsv, dev_file: dev.tsv, strategy: {method: lora}}
```
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint import read_meta, resolve_model_dir
from ..config import Config
from ..errors import UserError
from ..io import atomic_write_json
from .run import FinetuneConfig, run_finetune


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
    return mean, math.sqrt(var)


def mean_std(reports: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of every numeric metric across runs."""
    summary = {}
    for key, value in reports[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            mean, std = mean_and_std([r[key] for r in reports])
            summary[key] = {"mean": mean, "std": std}
    return summary


def run_seeds(cfg: FinetuneConfig, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """``cfg.runs`` runs with seeds seed, seed + 1, ... in ``out_dir/seed_N``; ``out_dir/metrics.json``
    holds each run's report and the mean ± std of the dev (and test) metrics."""
    reports = []
    for i in range(cfg.runs):
        seed = cfg.train.seed + i
        one = cfg.replace(runs=1, train=cfg.train.replace(seed=seed))
        reports.append(run_finetune(one, os.path.join(out_dir, f"seed_{seed}"), progress=progress))
    summary: dict[str, Any] = {"runs": cfg.runs, "seeds": [cfg.train.seed + i for i in range(cfg.runs)],
                               "selected_by": reports[0]["selected_by"]}
    for split in ("dev", "test"):
        if all(split in r for r in reports):
            summary[split] = mean_std([r[split] for r in reports])
    summary["per_run"] = reports
    atomic_write_json(os.path.join(out_dir, "metrics.json"), summary)
    return summary


# ------------------------------------------------------------------------------------- two stages
@dataclass
class StageConfig(Config):
    name: str = ""
    pretrain: dict[str, Any] | None = None  # PretrainRecipe fields (+ corpus: [files]); preset/init_from implied
    finetune: dict[str, Any] | None = None  # FinetuneConfig fields; model implied

    def validate(self) -> None:
        if (self.pretrain is None) == (self.finetune is None):
            raise UserError(f"stage '{self.name}' needs exactly one of 'pretrain:' or 'finetune:'")


@dataclass
class TransferRecipe(Config):
    model: str = ""  # the checkpoint the first stage starts from
    stages: list[StageConfig] = field(default_factory=list)

    def validate(self) -> None:
        if not self.model or not self.stages:
            raise UserError("a transfer recipe needs 'model:' and a list of 'stages:'")
        for stage in self.stages[:-1]:
            method = ((stage.finetune or {}).get("strategy") or {}).get("method", "full")
            if method != "full":
                raise UserError(f"stage '{stage.name}' passes its model on, so it must train it fully "
                                f"(strategy '{method}' keeps the base weights; use it in the last stage)")


def _pretrain_stage(spec: dict[str, Any], start: str, stage_dir: str, progress: bool) -> str:
    """Continued pre-training of ``start``: same architecture and tokenizer, its weights as the start."""
    from ..data.prepare import prepare_corpus
    from ..presets import PRESETS
    from ..train.pretrain import PretrainRecipe, run_pretrain

    spec = dict(spec)
    model_dir = resolve_model_dir(start)
    meta = read_meta(model_dir)
    corpus = spec.pop("corpus", None)
    if corpus:
        shards = os.path.join(stage_dir, "shards")
        if not os.path.exists(os.path.join(shards, "meta.json")):
            prepare_corpus(list(corpus), model_dir, shards, progress=progress)
        spec["data"] = {**spec.get("data", {}), "shards": shards}
    preset = meta.get("preset") or next((p.name for p in PRESETS.values() if p.family == meta["family"]), None)
    recipe = PretrainRecipe.from_dict({"preset": preset, **spec, "model": {**meta["config"], **spec.get("model", {})},
                                       "init_from": model_dir})
    run_pretrain(recipe, stage_dir, progress=progress)
    return os.path.join(stage_dir, "final")


def run_transfer(recipe: TransferRecipe, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """Run the stages in order, each from the previous one's model; ``out_dir/metrics.json`` sums up."""
    current = recipe.model
    stages = []
    for index, stage in enumerate(recipe.stages, start=1):
        kind = "pretrain" if stage.pretrain is not None else "finetune"
        stage_dir = os.path.join(out_dir, f"{index}_{stage.name or kind}")
        entry: dict[str, Any] = {"name": stage.name or kind, "kind": kind, "start": current, "out": stage_dir}
        if kind == "pretrain":
            current = _pretrain_stage(stage.pretrain, current, stage_dir, progress)
        else:
            cfg = FinetuneConfig.from_dict({**stage.finetune, "model": current})
            if cfg.runs > 1:  # the next stage continues from the first seed's model
                entry["report"] = run_seeds(cfg, stage_dir, progress)
                current = os.path.join(stage_dir, f"seed_{cfg.train.seed}", "best")
            else:
                entry["report"] = run_finetune(cfg, stage_dir, progress=progress)
                current = os.path.join(stage_dir, "best")
        stages.append(entry)
    report = {"stages": stages, "final_model": current}
    atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    return report
