"""A training run on a contiguous stream with an objective that carries state from step to step
(tests of the stream sampler and of the objectives that use it)."""

from __future__ import annotations

import json
import os

from ptmzoo.config import TrainConfig
from ptmzoo.objectives import PretrainCollator
from ptmzoo.train.distributed import DistEnv
from ptmzoo.train.trainer import Trainer


def train_on_stream(model, objective, data, out: str, max_steps: int, save_every: int, resume=None) -> list[float]:
    """Train ``model`` with ``objective`` on ``data`` (StreamSegments, read in order) for
    ``max_steps`` steps, a checkpoint every ``save_every``; the logged training losses."""
    config = TrainConfig(batch_size=4, max_steps=max_steps, save_every=save_every, log_every=1, lr=3e-3,
                         schedule="constant", keep_checkpoints=10, precision="fp32")
    trainer = Trainer(model, data, PretrainCollator([objective], 0), config, out, DistEnv(), progress=False,
                      objectives=[objective], shuffle=False)
    trainer.train(resume)
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        return [r["loss"] for r in map(json.loads, fh) if "loss" in r]
