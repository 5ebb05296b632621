"""bf16 autocast keeps the numerics: over the first hundred optimizer steps the loss curve of a
bf16 run stays within a stated tolerance of the float32 run with the same seed and data."""

import json
import os

import pytest
import torch

from ptmzoo.train.pretrain import PretrainJob, PretrainRecipe

# Measured on the 2-core dev machine (2026-11-22): max |Δloss| 0.0012 (bert-tiny) and 0.012
# (gpt2-tiny) over 100 steps; the tolerances leave room for other CPUs' bf16 kernels.
# A fresh-clone CI run (2026-12-02) saw one gpt2-tiny step differ by 0.11 (mean 0.0018): a single
# step can swing when a bf16 rounding changes which way it goes; 95 of 100 steps stay close.
MAX_STEP_DIFF = 0.05  # for 95% of the steps
MAX_OUTLIER_DIFF = 0.3  # any step
MAX_MEAN_DIFF = 0.01


def _loss_curve(shards, preset, precision, out_dir):
    recipe = PretrainRecipe.from_dict({
        "preset": preset, "data": {"shards": shards, "seq_len": 64},
        "model": {"hidden_dropout": 0.0, "attention_dropout": 0.0},
        "train": {"batch_size": 16, "max_steps": 100, "lr": 1e-3, "warmup_steps": 10, "log_every": 1,
                  "eval_every": 10**9, "save_every": 10**9, "seed": 0, "precision": precision,
                  "threads": 1},
    })
    # One thread (train.threads: the trainer sets its own count): a loaded machine (CI) must not
    # change how kernels split their sums; CI runs with two threads saw one step differ by 1.56
    # and by 0.11 (means 0.025, 0.002) where one-thread runs differ by < 0.012.
    threads = torch.get_num_threads()
    try:
        PretrainJob(recipe).trainer(out_dir, progress=False).train()
    finally:
        torch.set_num_threads(threads)
    with open(os.path.join(out_dir, "metrics.jsonl")) as fh:
        return [record["loss"] for record in map(json.loads, fh) if "loss" in record]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["bert-tiny", "gpt2-tiny"])
def test_bf16_loss_curve_follows_float32(wiki_shards, tmp_path, preset):
    fp32 = _loss_curve(wiki_shards, preset, "fp32", str(tmp_path / "fp32"))
    bf16 = _loss_curve(wiki_shards, preset, "bf16", str(tmp_path / "bf16"))
    assert len(fp32) == len(bf16) == 100
    diffs = [abs(a - b) for a, b in zip(fp32, bf16)]
    close = sorted(diffs)[94]  # the 95th of 100
    assert close < MAX_STEP_DIFF and max(diffs) < MAX_OUTLIER_DIFF, (close, max(diffs))
    assert sum(diffs) / len(diffs) < MAX_MEAN_DIFF, sum(diffs) / len(diffs)
    # The run really trains, so the comparison means something. Averages, not single steps: one
    # step's loss swings by ~0.3 with the batch, which made a single-step check flaky across CPUs.
    first, last = sum(fp32[:10]) / 10, sum(fp32[-10:]) / 10
    assert last < first - 0.5, (first, last)
