import math

import pytest

from ptmzoo.config import TrainConfig
from ptmzoo.train.optim import lr_factor, param_groups


def test_warmup_then_linear_decay_to_zero():
    cfg = TrainConfig(max_steps=110, warmup_steps=10, schedule="linear")
    assert [lr_factor(s, cfg) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0)


def test_cosine_with_floor_and_ratio_warmup():
    cfg = TrainConfig(max_steps=100, warmup_ratio=0.2, schedule="cosine", min_lr_ratio=0.1)
    assert cfg.warmup() == 20
    assert lr_factor(19, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_no_weight_decay_on_biases_and_norms():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and [p.shape for p in decay["params"]] == [(4, 4)]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3
