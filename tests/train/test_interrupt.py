"""A run stopped by SIGTERM (a pre-empted job) saves a checkpoint, exits with 130, and
`--resume` finishes it with the very losses of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli

ARGS = ["--preset", "gpt2-tiny", "--steps", "400", "--batch-size", "4", "--seq-len", "32", "--no-progress",
        "train.log_every=1", "train.eval_every=1000", "train.save_every=1000"]


def _losses(out):
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.mark.slow
def test_sigterm_then_resume_matches_uninterrupted(shakespeare_bpe_shards, tmp_path):
    reference = str(tmp_path / "reference")
    assert run_cli("pretrain", "--data", shakespeare_bpe_shards, "--out", reference, *ARGS).returncode == 0

    out = str(tmp_path / "interrupted")
    process = subprocess.Popen([sys.executable, "-m", "ptmzoo", "pretrain", "--data", shakespeare_bpe_shards,
                                "--out", out, *ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 20:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "continue with --resume" in stderr
    stopped_at = max(_losses(out))
    assert 20 <= stopped_at < 400
    assert os.path.exists(os.path.join(out, "checkpoints", f"step_{stopped_at:08d}", "trainer_state", "optimizer", "metadata.json"))

    resumed = run_cli("pretrain", "--out", out, "--resume", "--no-progress")  # the recipe is read from the run
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(out) == _losses(reference)
