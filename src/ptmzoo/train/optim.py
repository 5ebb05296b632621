"""AdamW with the usual exclusions from weight decay, and warmup + decay schedules."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, LayerNorm weights and other 1-D parameters (BERT's rule)."""
    return split_decay([p for p in model.parameters() if p.requires_grad], weight_decay)


def split_decay(params, weight_decay: float, **group_options) -> list[dict]:
    """Two optimizer groups of ``params`` (duplicates dropped): matrices with weight decay, 1-D without."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for param in params:
        if id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, **group_options},
              {"params": no_decay, "weight_decay": 0.0, **group_options}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device,
                    groups: list[dict] | None = None, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW over ``groups`` (e.g. per-layer learning rates), by default all trainable parameters.
    ``fused`` (one kernel for all parameters) needs plain tensors: not with FSDP's sharded ones."""
    groups = groups or param_groups(model, config.weight_decay)
    kwargs = dict(lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps)
    if fused and device.type in ("cuda", "cpu"):
        kwargs["fused"] = True  # one kernel for all parameters (CPU too since torch 2.4): 2-5x faster steps
    return torch.optim.AdamW(groups, **kwargs)


def lr_factor(step: int, config: TrainConfig, total: int | None = None) -> float:
    """Multiplier of the peak learning rate before optimizer step ``step`` (0-based) of a run of
    ``total`` steps (default: max_steps; a time-budgeted run: its planned steps)."""
    total = total or config.max_steps
    if config.schedule == "slanted_triangular":
        return slanted_triangular(step, total, config.stlr_cut_frac, config.stlr_ratio)
    warmup = config.warmup(total)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = config.min_lr_ratio
    if config.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)


def slanted_triangular(step: int, total: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """ULMFiT's schedule (Howard & Ruder, 2018, eq. 3): a short linear rise over the first
    ``cut_frac`` of the steps, then a long linear decay; the lowest rate is 1/ratio of the peak."""
    cut = max(1, math.floor(total * cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = max(0.0, 1 - (step - cut) / max(1, total - cut))
    return (1 + p * (ratio - 1)) / ratio


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total: Callable[[], int] | None = None):
    """``total()``: the run's planned steps, read at every step (they change with a time budget)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config, total() if total is not None else None))
