"""Stream samples (each batch row continues the previous step's text) and state that an objective
carries from step to step, saved with the trainer state for an exact resume."""

import os

import numpy as np
import pytest
import torch

from ptmzoo.catalog import HEADS, build_model
from ptmzoo.data.sampling import StepSampler
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.data.stream import StreamSegments
from ptmzoo.objectives.base import Objective
from tests.train.stream_helpers import train_on_stream


def test_every_row_continues_its_text_on_any_number_of_processes(shakespeare_bpe_shards):
    split = ShardedCorpus(shakespeare_bpe_shards).split("train")
    data = StreamSegments(split, seq_len=16, rows=4, separator_id=0)
    assert len(data) == 4 * data.segments and data.segments > 10
    for world in (1, 2):
        previous = {}
        for rank in range(world):
            sampler = StepSampler(len(data), 4, 4 // world, rank, world, shuffle=False, max_steps=5)
            for step, keys in enumerate(sampler):
                for index, epoch in keys:
                    sample = data[(index, epoch)]
                    row = sample["stream_row"]
                    assert np.array_equal(sample["target_ids"][:-1], sample["input_ids"][1:])
                    if row in previous:  # the next token after the last step's segment starts this one
                        assert sample["input_ids"][0] == previous[row]["target_ids"][-1], (world, step, row)
                    previous[row] = sample
        assert sorted(previous) == [0, 1, 2, 3]


class RunningMean(Objective):
    """A test objective: causal LM plus a pull of each row's mean state towards the mean it had one
    step before (its carried state, one vector per stream row)."""

    name = "clm"
    head = HEADS["clm"]
    samples = "stream"
    has_step = True

    def __init__(self, rows: int, width: int):
        super().__init__(None, None)
        self.memory = torch.zeros(rows, width)

    def prepare(self, batch, keys):
        batch["lm_labels"] = batch["input_ids"].copy()

    def step(self, model, batch):
        out = model(**model.select_inputs(batch), targets=batch)
        rows = batch["stream_row"]
        mean = out.last_hidden_state.mean(dim=1)
        pull = ((mean - self.memory[rows]) ** 2).sum()
        self.memory[rows] = mean.detach()
        out.loss = out.loss + 0.1 * pull / len(rows)
        out.loss_sums["clm"] = out.loss_sums["clm"] + 0.1 * pull / len(rows) * batch["lm_labels"][:, 1:].numel()
        return out

    def state_dict(self):
        return {"memory": self.memory}

    def load_state_dict(self, state):
        self.memory = state["memory"].clone()


def run(shards, out, max_steps, save_every, resume=None):
    torch.manual_seed(0)
    model = build_model("gpt2", {"vocab_size": 3000, "hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                 "intermediate_size": 32, "max_position_embeddings": 32, "hidden_dropout": 0.0,
                                 "attention_dropout": 0.0})
    objective = RunningMean(rows=4, width=16)
    objective.attach(model)
    data = StreamSegments(ShardedCorpus(shards).split("train"), 16, 4, separator_id=0)
    return train_on_stream(model, objective, data, out, max_steps, save_every, resume), objective


def test_carried_state_is_saved_and_a_resume_is_exact(shakespeare_bpe_shards, tmp_path):
    whole, objective = run(shakespeare_bpe_shards, str(tmp_path / "whole"), 6, 3)
    assert objective.memory.abs().sum() > 0  # the state is really used
    first, _ = run(shakespeare_bpe_shards, str(tmp_path / "part"), 3, 3)
    checkpoint = str(tmp_path / "part" / "checkpoints" / "step_00000003")
    assert os.path.exists(os.path.join(checkpoint, "trainer_state", "objectives_rank0.safetensors"))
    rest, resumed = run(shakespeare_bpe_shards, str(tmp_path / "rest"), 6, 3, resume=checkpoint)
    assert first == pytest.approx(whole[:3], rel=1e-6)
    assert rest == pytest.approx(whole[3:], rel=1e-6)
    torch.testing.assert_close(resumed.memory, objective.memory)
    # without the saved state, the resumed losses differ: the test would see a lost memory
    os.remove(os.path.join(checkpoint, "trainer_state", "objectives_rank0.safetensors"))
    forgot, _ = run(shakespeare_bpe_shards, str(tmp_path / "forgot"), 6, 3, resume=checkpoint)
    assert forgot != pytest.approx(whole[3:], rel=1e-6)
