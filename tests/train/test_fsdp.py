"""FSDP2 (``train.parallel=fsdp``) on 2 CPU processes (gloo): the same losses as 1 process, sharded
checkpoints that resume in 1 process, 1-process checkpoints that resume sharded, and
``ptmzoo.load`` / ``convert`` reading a sharded checkpoint as one model."""

import json
import os
import subprocess
import sys

import pytest
import torch

import ptmzoo
from tests.conftest import run_cli

ARGS = ["--preset", "bert-tiny", "--steps", "6", "--batch-size", "8", "--seq-len", "64", "--no-progress",
        "--lr", "2e-3", "train.warmup_steps=1", "train.log_every=1", "train.eval_every=3", "train.save_every=3",
        "train.keep_checkpoints=5", "model.hidden_dropout=0", "model.attention_dropout=0"]
STEP3 = os.path.join("checkpoints", "step_00000003")


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        return [r["loss"] for r in map(json.loads, fh) if "loss" in r]


def torchrun(*args):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "ptmzoo", *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(wiki_shards, tmp_path_factory):
    """One uninterrupted run in 1 process and one with FSDP on 2, each with a checkpoint at step 3."""
    root = tmp_path_factory.mktemp("fsdp")
    single, sharded = str(root / "single"), str(root / "sharded")
    result = run_cli("pretrain", "--data", wiki_shards, "--out", single, *ARGS, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    torchrun("pretrain", "--data", wiki_shards, "--out", sharded, *ARGS, "train.parallel=fsdp")
    return root, single, sharded


@pytest.mark.slow
def test_two_fsdp_processes_follow_one(runs):
    _, single, sharded = runs
    one, two = losses(single), losses(sharded)
    assert len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-5)
    assert sorted(os.listdir(os.path.join(sharded, STEP3, "model"))) == ["__0_0.distcp", "__1_0.distcp",
                                                                         "metadata.json"]
    assert not os.path.exists(os.path.join(sharded, STEP3, "model.safetensors"))  # the weights are sharded


@pytest.mark.slow
def test_sharded_checkpoint_resumes_in_one_process_and_back(runs, wiki_shards):
    root, single, sharded = runs
    one = losses(single)
    from_sharded = str(root / "from_sharded")
    result = run_cli("pretrain", "--data", wiki_shards, "--out", from_sharded, "--resume",
                     os.path.join(sharded, STEP3), *ARGS, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert losses(from_sharded) == pytest.approx(one[3:], rel=1e-5)
    from_single = str(root / "from_single")
    torchrun("pretrain", "--data", wiki_shards, "--out", from_single, "--resume", os.path.join(single, STEP3), *ARGS,
             "train.parallel=fsdp")
    assert losses(from_single) == pytest.approx(one[3:], rel=1e-5)


@pytest.mark.slow
def test_load_and_convert_read_a_sharded_checkpoint_as_one_model(runs, tmp_path):
    _, single, sharded = runs
    whole = ptmzoo.load(os.path.join(single, STEP3)).model.state_dict()
    loaded = ptmzoo.load(os.path.join(sharded, STEP3)).model.state_dict()
    assert set(loaded) == set(whole)
    assert max((loaded[k] - whole[k]).abs().max().item() for k in whole) < 1e-4
    out = str(tmp_path / "whole")
    result = run_cli("convert", os.path.join(sharded, STEP3), out, "--to", "ptmzoo")
    assert result.returncode == 0, result.stderr
    assert os.path.exists(os.path.join(out, "model.safetensors"))
    converted = ptmzoo.load(out).model.state_dict()
    assert all(torch.equal(converted[k], loaded[k]) for k in loaded)
