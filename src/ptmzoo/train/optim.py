"""AdamW with the usual exclusions from weight decay, and warmup + decay schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, LayerNorm weights and other 1-D parameters (BERT's rule)."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    kwargs = dict(lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps)
    if device.type in ("cuda", "cpu"):
        kwargs["fused"] = True  # one kernel for all parameters (CPU too since torch 2.4): 2-5x faster steps
    return torch.optim.AdamW(groups, **kwargs)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak learning rate before optimizer step ``step`` (0-based)."""
    warmup = config.warmup()
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
    floor = config.min_lr_ratio
    if config.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
