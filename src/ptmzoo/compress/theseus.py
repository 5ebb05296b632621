"""BERT-of-Theseus (Xu et al., 2020): compression by progressive module replacing.

The fine-tuned teacher (the *predecessor*, N layers) is cut into M modules of N / M consecutive
layers; the *successor* has one layer per module, initialised from the predecessor's first M
layers, and the predecessor's embeddings and task head (frozen while replacing). In each
training step of the replacing phase every module is, independently with probability p (the
replacement rate), the successor's layer, else the predecessor's layers -- so the successor
layers learn to work inside the predecessor and with each other, from the task loss alone. The
rate is ``constant`` or a ``linear`` curriculum p(t) = min(1, p0 + (1 - p0) t / T) that reaches 1 at
the end of the phase (the paper's theta(t) = min(1, k t + b)). Then the successor alone is
fine-tuned (every weight, ``successor_epochs``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from ..errors import UserError
from ..finetune.run import FinetuneRun, run_finetune
from ..io import atomic_write_json
from ..models.base import ModelOutput
from ..models.model import PtmModel
from ..objectives.base import Objective
from .student import init_student
from .teachers import as_source, check_labels, copy_head, freeze, parameters


def replacement_rate(step: int, total_steps: int, rate: float, schedule: str = "constant") -> float:
    """The probability that a module is the successor's at optimizer step ``step`` (0-based)."""
    if schedule == "constant":
        return rate
    return min(1.0, rate + (1 - rate) * step / max(1, total_steps))


class ModuleReplacing(Objective):
    """The replacing phase's step: the successor's embeddings and head around a mix of successor
    layers and predecessor modules (drawn anew every step); evaluation runs the successor alone."""

    name = "theseus"
    named_in_recipes = False  # run_theseus builds it with the predecessor
    has_step = True
    shardable = False
    head = None

    def __init__(self, predecessor: PtmModel, modules: int, total_steps: int, rate: float, schedule: str):
        super().__init__(None, None, 0)
        layers = list(predecessor.backbone.layers)
        if len(layers) % modules:
            raise UserError(f"BERT-of-Theseus splits the teacher's {len(layers)} layers into equal modules; a "
                            f"{modules}-layer successor does not divide them (use a divisor, e.g. {len(layers) // 2})")
        self.predecessor = freeze(predecessor)
        size = len(layers) // modules
        self.modules = [layers[i * size:(i + 1) * size] for i in range(modules)]
        self.total_steps, self.rate, self.schedule = total_steps, rate, schedule
        self.current_step = 0

    def networks(self):
        return {"predecessor": self.predecessor}

    def attach(self, model):
        pass

    def before_step(self, step: int) -> None:  # the Trainer's hook: the schedule follows the optimizer steps
        self.current_step = step

    def current_rate(self) -> float:
        return replacement_rate(self.current_step, self.total_steps, self.rate, self.schedule)

    def mixed_layers(self, successor: PtmModel) -> list:
        """One block per module: the successor's layer with probability p, else the predecessor's."""
        chosen = (torch.rand(len(self.modules)) < self.current_rate()).tolist()
        blocks = []
        for index, use_successor in enumerate(chosen):
            if use_successor:
                blocks.append(successor.backbone.layers[index])
            else:
                blocks.append(chain(self.modules[index]))
        return blocks

    def step(self, model: PtmModel, batch) -> ModelOutput:
        if not model.training:
            return model(**model.select_inputs(batch), targets=batch)
        result = model(**model.select_inputs(batch), targets=batch, layers=self.mixed_layers(model))
        # a step may draw only predecessor modules: the loss then reaches no trained weight, so a
        # zero term keeps every successor layer in the graph (each gets its gradient, here 0)
        anchor = sum(p.sum() for p in model.backbone.layers.parameters() if p.requires_grad) * 0.0
        first = next(iter(result.loss_sums))
        result.loss_sums[first] = result.loss_sums[first] + anchor
        return result


def chain(layers):
    def run(x, mask, **options):  # options: what the backbone passes every layer (NEZHA's relative positions)
        for layer in layers:
            x = layer(x, mask, **options)
        return x

    return run


def run_theseus(cfg, teacher, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """Replacing phase in ``out_dir/replacing``, then the successor alone in ``out_dir``."""
    ft, options = cfg.finetune, cfg.distill
    if ft.strategy.gradual_unfreezing:
        raise UserError("BERT-of-Theseus sets its own schedule; it cannot be combined with --gradual-unfreezing")
    predecessor = teacher.model
    total = predecessor.config.num_layers
    modules = cfg.student_num_layers or (len(cfg.student_layers) if cfg.student_layers else max(1, total // 2))
    successor = init_student(predecessor, list(range(modules)), same_family=True)  # the first M layers
    run = FinetuneRun(ft, as_source(successor, teacher, "theseus successor"))
    check_labels(run, teacher)
    head = run.task.head_name
    copy_head(run.model, predecessor, head)
    for name, param in run.model.named_parameters():  # replacing: only the successor's layers learn
        param.requires_grad_(name.startswith("backbone.layers."))
    steps = math.ceil(ft.epochs * math.ceil(len(run.train_samples) / ft.train.batch_size))
    replacing = ModuleReplacing(predecessor, modules, steps, options.replace_rate, options.replace_schedule)
    meta = {"distillation": {"method": "theseus", "teachers": [os.path.abspath(teacher.path)],
                             "teacher_parameters": parameters(predecessor), "modules": modules,
                             "replace_rate": options.replace_rate, "replace_schedule": options.replace_schedule}}
    stage_dir = os.path.join(out_dir, "replacing")
    replaced = run_finetune(ft, stage_dir, progress=progress, run=run, objectives=[replacing],
                            trainer_options={"before_step": replacing.before_step}, meta=meta)
    successor = run.model
    successor.requires_grad_(True)
    epochs = options.successor_epochs if options.successor_epochs is not None else ft.epochs
    alone = FinetuneRun(ft.replace(epochs=epochs), as_source(successor, teacher, stage_dir))
    copy_head(alone.model, successor, head)
    report = run_finetune(alone.cfg, out_dir, progress=progress, run=alone, meta=meta)
    report["distillation"]["student_parameters"] = parameters(alone.model)
    report["stages"] = {"replacing": {"dev": replaced.get("dev"), "steps": replaced["steps"]}}
    atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    return report
