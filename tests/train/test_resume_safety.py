"""A checkpoint never runs code, a resume is exact or refused in one line, a full disk costs no
earlier checkpoint, and what is renamed into place is on disk first.

Runs are tiny (bert-tiny shrunk to 1 layer x 32) and go through the command line; the crafted
pickle and the full disk run in their own processes, as they would for a user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY_PRETRAIN as TINY
from tests.conftest import RunsCode, assert_user_error, run_cli, run_main

from ptmzoo.cli import main

MODEL = {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, wiki_shards):
    """A 4-step run with checkpoints at steps 2 and 4; tests work on copies (``run_copy``)."""
    out = str(tmp_path_factory.mktemp("resume") / "run")
    assert main(["pretrain", "--data", wiki_shards, "--out", out, "--steps", "4", *TINY]) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished_run, out)
    return out


def _state_dir(run: str, step: int = 4) -> str:
    return os.path.join(run, "checkpoints", f"step_{step:08d}", "trainer_state")


@pytest.mark.parametrize("name", ["rng_rank0.pt", "optimizer.pt", "scheduler.pt", "optimizer/__0_0.distcp"])
def test_a_crafted_pickle_in_trainer_state_is_refused_and_never_run(run_copy, tmp_path, name):
    """`--resume` used to torch.load the RNG states with weights_only=False: a crafted file ran code.
    The ``.pt`` files are those of a format-1 checkpoint (earlier versions), which are still read."""
    marker = str(tmp_path / "code_ran")
    state = _state_dir(run_copy)
    if name == "rng_rank0.pt":
        os.remove(os.path.join(state, "rng_rank0.safetensors"))
    if name in ("optimizer.pt", "scheduler.pt"):  # format 1: the optimizer and scheduler as torch.save files
        groups = json.loads(Path(state, "optimizer_groups.json").read_text())
        os.remove(os.path.join(state, "optimizer_groups.json"))
        count = 0
        for group in groups:  # format 1 numbered the parameters instead of naming them
            group["params"], count = list(range(count, count + len(group["params"]))), count + len(group["params"])
        torch.save({"state": {}, "param_groups": groups}, os.path.join(state, "optimizer.pt"))
        torch.save(json.loads(Path(state, "scheduler.json").read_text()), os.path.join(state, "scheduler.pt"))
    torch.save({"torch": RunsCode(marker), "state": RunsCode(marker)}, os.path.join(state, name))
    if name.endswith(".distcp"):  # the crafted chunk is what the metadata points every tensor at
        metadata_file = Path(state, "optimizer", "metadata.json")
        metadata = json.loads(metadata_file.read_text())
        for item in metadata["storage"]:
            item.update(start=0, length=os.path.getsize(os.path.join(state, name)))
        metadata_file.write_text(json.dumps(metadata))
    result = run_cli("pretrain", "--out", run_copy, "--resume", "--no-progress")
    assert_user_error(result, f"{name.split('/')[0]} holds more than tensors and numbers .*ptmzoo does not load it")
    assert not os.path.exists(marker)


def test_an_earlier_versions_pickled_rng_state_still_resumes(run_copy):
    """The RNG states of earlier checkpoints are plain tensors: read with weights_only=True."""
    state = _state_dir(run_copy)
    from safetensors.torch import load_file

    torch.save({"torch": load_file(os.path.join(state, "rng_rank0.safetensors"))["torch"]},
               os.path.join(state, "rng_rank0.pt"))
    os.remove(os.path.join(state, "rng_rank0.safetensors"))
    assert main(["pretrain", "--out", run_copy, "--resume", "--steps", "6", "--no-progress"]) == 0


@pytest.mark.parametrize("damage", ["no rng", "no optimizer", "truncated scheduler", "state without samples_seen",
                                    "garbage weights"])
def test_a_missing_or_corrupt_trainer_state_file_is_one_line_and_keeps_the_recipe(run_copy, capsys, damage):
    """A missing RNG file used to resume silently, with losses drifting from the uninterrupted run;
    and a failed --resume rewrote recipe.yaml."""
    state = _state_dir(run_copy)
    if damage == "no rng":
        os.remove(os.path.join(state, "rng_rank0.safetensors"))
    elif damage == "no optimizer":
        shutil.rmtree(os.path.join(state, "optimizer"))
    elif damage == "truncated scheduler":
        path = os.path.join(state, "scheduler.json")
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
    elif damage == "state without samples_seen":
        path = os.path.join(state, "state.json")
        values = json.loads(Path(path).read_text())
        del values["samples_seen"]
        Path(path).write_text(json.dumps(values))
    else:
        Path(os.path.dirname(state), "model.safetensors").write_bytes(b"\0" * 100)
    recipe = Path(os.path.join(run_copy, "recipe.yaml")).read_bytes()
    err = assert_user_error(run_main(capsys, "pretrain", "--out", run_copy, "--resume", "--steps", "9", "--no-progress"),
                            "resume")
    expected = {"no rng": "rng_rank0.safetensors is missing", "no optimizer": "optimizer is missing",
                "truncated scheduler": "scheduler.json is corrupt", "state without samples_seen": "lacks samples_seen",
                "garbage weights": "model.safetensors is corrupt"}[damage]
    assert expected in err, err
    assert Path(os.path.join(run_copy, "recipe.yaml")).read_bytes() == recipe  # --steps 9 not written


def test_an_override_after_resume_is_an_override(run_copy):
    """`--resume key=value` used to take the override as the checkpoint to resume from."""
    assert main(["pretrain", "--out", run_copy, "--resume", "train.max_steps=6", "--no-progress"]) == 0
    records = [json.loads(line) for line in Path(run_copy, "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-3:] == [4, 5, 6]  # resumed at 4, ran to the new end


def test_a_torn_last_metrics_line_does_not_stop_resume(run_copy, capsys):
    """A full disk leaves half a record at the end of metrics.jsonl; every --resume used to fail
    with JSONDecodeError."""
    metrics = os.path.join(run_copy, "metrics.jsonl")
    with open(metrics, "a") as fh:
        fh.write('{"loss": 7.1, "grad_norm": 1.')
    assert main(["pretrain", "--out", run_copy, "--resume", "--steps", "6", "--no-progress"]) == 0
    records = [json.loads(line) for line in Path(metrics).read_text().splitlines()]  # every line parses
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    # a damaged line inside the log is not silently dropped
    lines = Path(metrics).read_text().splitlines()
    lines[2] = lines[2][:10]
    Path(metrics).write_text("\n".join(lines) + "\n")
    assert_user_error(run_main(capsys, "pretrain", "--out", run_copy, "--resume", "--steps", "8", "--no-progress"),
                      "metrics.jsonl:3: not a JSON record")


_FULL_DISK = """
import resource, signal, sys
from ptmzoo.errors import UserError
from ptmzoo.train.pretrain import PretrainRecipe, run_pretrain

shards, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG

def disk_fills(step, record):
    if step == 3:  # after the step-2 checkpoint: no file may grow beyond `limit` bytes any more
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

recipe = PretrainRecipe.from_dict({"preset": "bert-tiny", "data": {"shards": shards, "seq_len": 32},
    "model": MODEL, "train": {"batch_size": 4, "max_steps": 6, "log_every": 1, "save_every": 2, "eval_every": 1000}})
try:
    run_pretrain(recipe, out, progress=False, callbacks=[disk_fills])
except UserError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
""".replace("MODEL", repr(MODEL))


@pytest.mark.parametrize("limit", [600_000, 100_000])
def test_a_full_disk_during_a_checkpoint_keeps_the_earlier_ones(wiki_shards, tmp_path, limit):
    """A full disk, simulated by RLIMIT_FSIZE (writes fail with EFBIG as they would with ENOSPC). The
    optimizer state (twice the weights) is written first, so either limit stops torch.save inside
    DCP's writer (the original `unexpected pos` traceback). Both used to leave `.step_N.tmp` behind."""
    out = str(tmp_path / "run")
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK)
    result = subprocess.run([sys.executable, str(script), wiki_shards, out, str(limit)], capture_output=True, text=True,
                            check=False)
    line = assert_user_error(result, r"cannot write checkpoint .*step_00000004 \(.*\); is the disk full\? The "
                                     r"earlier checkpoints .* are intact")
    assert "torch.save could not write every byte" in line
    checkpoints = os.path.join(out, "checkpoints")
    assert sorted(os.listdir(checkpoints)) == ["latest", "step_00000002"]  # no .step_00000004.tmp
    assert Path(os.path.join(checkpoints, "latest")).read_text().strip() == "step_00000002"
    assert main(["pretrain", "--out", out, "--resume", "--no-progress"]) == 0  # space again: it goes on
    assert os.path.exists(os.path.join(checkpoints, "step_00000006", "trainer_state", "optimizer", "metadata.json"))


def test_checkpoint_files_and_directory_are_synced_before_the_rename(run_copy, wiki_shards, monkeypatch):
    """So that a power loss cannot leave a renamed but empty checkpoint. The order of the fsync and
    rename calls is recorded around a real save (a power cut itself cannot be staged in a test)."""
    import ptmzoo.io
    from ptmzoo.train.pretrain import PretrainJob, PretrainRecipe

    recipe = PretrainRecipe.from_dict({"preset": "bert-tiny", "data": {"shards": wiki_shards, "seq_len": 32},
                                       "model": MODEL, "train": {"batch_size": 4, "max_steps": 2}})
    trainer = PretrainJob(recipe).trainer(run_copy, progress=False)
    trainer.step = 10
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(ptmzoo.io.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                           real_fsync(fd))[1])
    monkeypatch.setattr(ptmzoo.io.os, "replace", lambda a, b: (events.append(("rename", a)), real_replace(a, b))[1])
    final = trainer.save_checkpoint()
    tmp = os.path.join(os.path.dirname(final), ".step_00000010.tmp")
    renamed = events.index(("rename", tmp))
    synced_before = {path for kind, path in events[:renamed] if kind == "fsync"}
    written = {os.path.join(root, name).replace(final, tmp, 1) for root, dirs, names in os.walk(final)
               for name in names + dirs} | {tmp}
    assert written <= synced_before, written - synced_before
    assert ("fsync", os.path.dirname(final)) in events[renamed:]  # the rename itself, made durable
    assert ("fsync", os.path.join(os.path.dirname(final), "latest")) not in events[:renamed]


def test_outputs_follow_the_umask(wiki_shards, tmp_path, wordpiece_tokenizer):
    """mkdtemp, mkstemp and safetensors made checkpoints, model directories and reports 0700/0600."""
    tok = str(tmp_path / "tok")
    wordpiece_tokenizer.save(tok)
    previous = os.umask(0o002)
    try:
        out = str(tmp_path / "run")
        assert main(["pretrain", "--data", wiki_shards, "--out", out, "--steps", "2", *TINY]) == 0
        assert main(["init", "--preset", "bert-tiny", "--tokenizer", tok, "--out", str(tmp_path / "init"),
                     "num_layers=1", "hidden_size=32", "num_heads=2", "intermediate_size=64"]) == 0
    finally:
        os.umask(previous)
    modes = {}
    for root in (out, str(tmp_path / "init")):
        for directory, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(directory, name)
                modes[os.path.relpath(path, tmp_path)] = os.stat(path).st_mode & 0o777
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o775 if os.path.isdir(tmp_path / p) else 0o664)}
    assert not wrong, wrong
    assert "run/checkpoints/step_00000002/model.safetensors" in modes and "run/final" in modes
