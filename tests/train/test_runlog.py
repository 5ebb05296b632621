"""The run log: metrics.jsonl and TensorBoard event files are two sinks of the same records
(train.runlog); train.tensorboard switches the event files."""

import json
import os
import subprocess
import sys

import pytest

from ptmzoo.errors import UserError
from ptmzoo.train import runlog
from ptmzoo.train.pretrain import PretrainJob, PretrainRecipe

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def _recipe(shards, steps=6, **train):
    settings = {"batch_size": 4, "max_steps": steps, "lr": 1e-3, "warmup_steps": 1, "log_every": 1,
                "eval_every": 3, "eval_batches": 1, "save_every": 2, "seed": 3, **train}
    return PretrainRecipe.from_dict({
        "preset": "bert-tiny", "data": {"shards": shards, "seq_len": 32},
        "model": {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64},
        "train": settings,
    })


def _records(out):
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _events(out) -> dict[str, dict[int, float]]:
    accumulator = EventAccumulator(os.path.join(out, "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}


def _expected(records) -> dict[str, dict[int, float]]:
    """The scalars metrics.jsonl's records stand for: train/KEY of the logging steps, eval/KEY of
    the evaluations."""
    expected: dict[str, dict[int, float]] = {}
    for record in records:
        prefix = "train" if "lr" in record else "eval"
        for key, value in record.items():
            if key != "step" and not (prefix == "eval" and key == "tokens"):
                expected.setdefault(f"{prefix}/{key}", {})[record["step"]] = value
    return expected


def _assert_same(events, expected):
    assert events.keys() == expected.keys()
    for tag, values in expected.items():
        assert events[tag].keys() == values.keys(), tag
        for step, value in values.items():
            assert events[tag][step] == pytest.approx(value, rel=1e-6, abs=1e-6), (tag, step)  # float32 in the file


def test_event_files_hold_the_metrics_jsonl_values(wiki_shards, tmp_path):
    out = str(tmp_path / "run")
    PretrainJob(_recipe(wiki_shards)).trainer(out, progress=False).train()
    records = _records(out)
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if "lr" not in r] == [3, 6]
    tokens = [r["tokens"] for r in records if "lr" in r]
    assert tokens == sorted(tokens) and tokens[0] > 0  # the tokens trained on so far, for plots against tokens
    events = _events(out)
    # losses per objective (BERT: MLM + NSP), learning rate, gradient norm, throughput, evaluation
    assert {"train/loss", "train/loss_mlm", "train/loss_nsp", "train/lr", "train/grad_norm",
            "train/tokens_per_s", "train/tokens", "eval/eval_loss"} <= events.keys()
    _assert_same(events, _expected(records))


def test_a_resumed_run_hides_what_the_interrupted_run_logged_after_its_checkpoint(wiki_shards, tmp_path):
    class Crash(Exception):
        pass

    def crash_at_step_3(step, record):
        if step == 3:
            raise Crash

    out = str(tmp_path / "run")
    with pytest.raises(Crash):
        PretrainJob(_recipe(wiki_shards)).trainer(out, progress=False, callbacks=[crash_at_step_3]).train()
    PretrainJob(_recipe(wiki_shards)).trainer(out, progress=False).train(resume=True)
    records = _records(out)
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3, 4, 5, 6]
    _assert_same(_events(out), _expected(records))


def test_tensorboard_false_writes_no_event_files(wiki_shards, tmp_path):
    out = str(tmp_path / "run")
    PretrainJob(_recipe(wiki_shards, 2, tensorboard=False)).trainer(out, progress=False).train()
    assert len(_records(out)) == 3 and not os.path.exists(os.path.join(out, "tensorboard"))


def test_the_default_follows_whether_tensorboard_is_importable(monkeypatch):
    assert runlog.use_tensorboard(None) is True and runlog.use_tensorboard(False) is False
    monkeypatch.setattr(runlog, "tensorboard_available", lambda: False)
    assert runlog.use_tensorboard(None) is False  # silently off
    with pytest.raises(UserError, match="pip install tensorboard"):
        runlog.use_tensorboard(True)


def test_tensorboard_true_without_the_package_is_one_line(tmp_path):
    """The CLI with tensorboard hidden from imports: one line naming the package, exit 2."""
    hide = ("import importlib.util, sys; find = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda name, *a: None if name == 'tensorboard' else find(name, *a); "
            "from ptmzoo.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", hide, "pretrain", "--preset", "bert-tiny", "--data",
                             str(tmp_path / "none"), "--out", str(tmp_path / "run"), "train.tensorboard=true"],
                            capture_output=True, text=True, timeout=300, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "pip install tensorboard" in lines[0]
