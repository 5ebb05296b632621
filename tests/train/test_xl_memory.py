"""Transformer-XL training: the xl_lm objective carries each stream row's memory from step to step
(the losses of its steps equal running each row's text segment by segment with the memory by
hand), saves it for an exact resume, starts a row afresh when its text starts again, and keeps the
evaluation's memory apart from the training memory."""

import json
import os

import pytest
import torch

from ptmzoo.catalog import build_model
from ptmzoo.config import TrainConfig
from ptmzoo.data.sampling import StepSampler
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.data.stream import StreamSegments
from ptmzoo.objectives import PretrainCollator
from ptmzoo.objectives.xl_lm import SegmentLM
from ptmzoo.train.distributed import DistEnv
from ptmzoo.train.trainer import Trainer, evaluate_loss

ROWS, SEGMENT, MEM_LEN = 4, 16, 24
CONFIG = {"vocab_size": 3000, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
          "mem_len": MEM_LEN, "cutoffs": [500, 1500], "div_val": 2, "hidden_dropout": 0.0}


def setup(shards, seed=0):
    torch.manual_seed(seed)
    model = build_model("transfo_xl", CONFIG)
    objective = SegmentLM(None, None)
    objective.attach(model)
    data = StreamSegments(ShardedCorpus(shards).split("train"), SEGMENT, ROWS, separator_id=0)
    return model, objective, data, PretrainCollator([objective], 0)


def test_steps_carry_each_rows_memory(shakespeare_bpe_shards):
    model, objective, data, collate = setup(shakespeare_bpe_shards)
    model.train()  # the training memory (no dropout in this config)
    sampler = StepSampler(len(data), ROWS, ROWS, shuffle=False, max_steps=4)
    with torch.no_grad():
        step_losses = [objective.step(model, collate([data[k] for k in keys])).loss_sums["xl_lm"].item()
                       for keys in sampler]
        # by hand: each row's segments in order, the memory passed along
        by_hand = [0.0] * 4
        for row in range(ROWS):
            mems = None
            for step in range(4):
                sample = data[(step * ROWS + row, 0)]
                ids = torch.as_tensor(sample["input_ids"])[None]
                out = model(ids, mems=mems, targets={"xl_targets": torch.as_tensor(sample["target_ids"])[None]})
                by_hand[step] += out.loss_sums["xl_lm"].item()
                mems = out.mems
    assert step_losses == pytest.approx(by_hand, rel=1e-5)
    assert objective.train_memory.states.shape == (2, ROWS, MEM_LEN, 32)
    assert (objective.train_memory.filled == MEM_LEN).all() and (objective.train_memory.segment == 3).all()
    assert objective.eval_memory.states is None  # evaluation has its own


def test_a_row_whose_text_starts_again_starts_without_memory(shakespeare_bpe_shards):
    model, objective, data, collate = setup(shakespeare_bpe_shards)
    model.train()
    with torch.no_grad():
        objective.step(model, collate([data[(i, 0)] for i in range(ROWS)]))  # segment 0 of every row
        again = collate([data[(i, 1)] for i in range(ROWS)])  # segment 0 of the next epoch
        mems, _ = objective.train_memory.read(again["stream_row"], again["stream_segment"])
        assert mems is None
        following = collate([data[(ROWS + i, 0)] for i in range(ROWS)])  # segment 1
        mems, real = objective.train_memory.read(following["stream_row"], following["stream_segment"])
        assert mems[0].shape == (ROWS, SEGMENT, 32) and real.all()


def run(shards, out, max_steps, save_every, resume=None, evaluate=False):
    model, objective, data, collate = setup(shards)
    config = TrainConfig(batch_size=ROWS, max_steps=max_steps, save_every=save_every, log_every=1, lr=3e-3,
                         schedule="constant", keep_checkpoints=10, precision="fp32", eval_every=2, eval_batches=3)
    held_out = StreamSegments(ShardedCorpus(shards).split("valid"), SEGMENT, ROWS, separator_id=0)
    evaluations = []

    def evaluate_fn(m):
        before = objective.train_memory.state_dict("")
        metrics = evaluate_loss(m, held_out, collate, DistEnv(), ROWS, 3, "fp32", [objective])
        after = objective.train_memory.state_dict("")
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
        evaluations.append(metrics["eval_loss"])
        return metrics

    trainer = Trainer(model, data, collate, config, out, DistEnv(), progress=False, objectives=[objective],
                      shuffle=False, evaluate=evaluate_fn if evaluate else None)
    trainer.train(resume)
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        return [r["loss"] for r in map(json.loads, fh) if "loss" in r], objective, evaluations


def test_memory_is_saved_and_a_resume_is_exact(shakespeare_bpe_shards, tmp_path):
    whole, objective, evaluations = run(shakespeare_bpe_shards, str(tmp_path / "whole"), 6, 3, evaluate=True)
    assert len(evaluations) == 3 and objective.eval_memory.states is not None
    first, _, _ = run(shakespeare_bpe_shards, str(tmp_path / "part"), 3, 3)
    checkpoint = str(tmp_path / "part" / "checkpoints" / "step_00000003")
    assert os.path.exists(os.path.join(checkpoint, "trainer_state", "objectives_rank0.safetensors"))
    rest, resumed, _ = run(shakespeare_bpe_shards, str(tmp_path / "rest"), 6, 3, resume=checkpoint)
    assert first == pytest.approx(whole[:3], rel=1e-6)
    assert rest == pytest.approx(whole[3:], rel=1e-6)
    torch.testing.assert_close(resumed.train_memory.states, objective.train_memory.states)
    # without the saved memory the resumed run would read none: other losses
    os.remove(os.path.join(checkpoint, "trainer_state", "objectives_rank0.safetensors"))
    forgot, _, _ = run(shakespeare_bpe_shards, str(tmp_path / "forgot"), 6, 3, resume=checkpoint)
    assert forgot != pytest.approx(whole[3:], rel=1e-6)
