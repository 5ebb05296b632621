"""No user file is lost to ``--out``: an existing, non-empty output is refused unless ``--resume``
applies or ``--overwrite`` is given, ``--overwrite`` replaces only what ptmzoo wrote, an output is
never an input, and a second process writing the same ``--out`` is refused at once.

The verbs run in this process (``ptmzoo.cli.main``) on real files, except the lock tests, which
need two real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import TINY_PRETRAIN as TINY
from tests.conftest import assert_user_error, run_cli, run_main, shared_path


def snapshot(directory) -> dict[str, bytes]:
    """Every file below ``directory`` with its bytes (the lock file aside)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            if not name.endswith("ptmzoo-lock"):
                files[os.path.relpath(path, directory)] = Path(path).read_bytes()
    return files


@pytest.fixture
def corpus_dir(tmp_path):
    """A working directory holding the user's corpus (and nothing else)."""
    work = tmp_path / "work"
    work.mkdir()
    lines = Path(shared_path("en", "corpus", "tinyshakespeare.txt")).read_text(encoding="utf-8").splitlines()[:300]
    (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return work


def test_tokenizer_train_into_the_working_directory_is_refused_even_with_overwrite(capsys, corpus_dir, monkeypatch):
    """`tokenizer train --out .` used to delete the working directory, corpus included."""
    monkeypatch.chdir(corpus_dir)
    before = snapshot(corpus_dir)
    train = ["tokenizer", "train", "--input", "corpus.txt", "--kind", "char", "--vocab-size", "100", "--out", "."]
    assert_user_error(run_main(capsys, *train), r"exists and is not empty; replace ptmzoo's earlier output with --overwrite")
    assert_user_error(run_main(capsys, *train, "--overwrite"), r"holds files ptmzoo did not write \(corpus.txt\)")
    assert snapshot(corpus_dir) == before


def test_overwrite_replaces_ptmzoo_output_but_never_a_users_file(capsys, corpus_dir, wordpiece_tokenizer):
    tok, out = str(corpus_dir / "tok"), str(corpus_dir / "init")
    wordpiece_tokenizer.save(tok)
    init = ["init", "--preset", "bert-tiny", "--tokenizer", tok, "--out", out, "num_layers=1", "hidden_size=32",
            "num_heads=2", "intermediate_size=64"]
    assert run_main(capsys, *init).returncode == 0
    first = snapshot(out)
    assert set(json.loads(first[".ptmzoo-outputs.json"])["written"]) >= {"model.safetensors", "ptmzoo.json"}
    assert_user_error(run_main(capsys, *init, "--seed", "1"), "exists and is not empty.*--overwrite")
    assert snapshot(out) == first
    assert run_main(capsys, *init, "--seed", "1", "--overwrite").returncode == 0
    assert snapshot(out)["model.safetensors"] != first["model.safetensors"]  # replaced: another seed
    (corpus_dir / "init" / "notes.txt").write_text("my notes")
    replaced = snapshot(out)
    assert_user_error(run_main(capsys, *init, "--overwrite"), r"holds files ptmzoo did not write \(notes.txt\)")
    assert snapshot(out) == replaced


def test_out_onto_a_directory_of_other_files_is_refused(capsys, corpus_dir, wiki_shards):
    before = snapshot(corpus_dir)
    for extra in ([], ["--overwrite"]):
        assert_user_error(run_main(capsys, "pretrain", "--data", wiki_shards, "--out", str(corpus_dir), "--steps", "2",
                            *TINY, *extra), "not empty; continue it with --resume|did not write")
    assert snapshot(corpus_dir) == before


def test_a_second_run_onto_a_previous_one_is_refused_and_overwrite_starts_afresh(capsys, tmp_path, wiki_shards):
    """Without --resume, a run used to overwrite the old metrics and final/, prune its checkpoints
    and leave `latest` dangling, so that a later --resume continued the wrong run."""
    out = str(tmp_path / "run")
    assert run_main(capsys, "pretrain", "--data", wiki_shards, "--out", out, "--steps", "6", *TINY).returncode == 0
    previous = snapshot(out)
    assert "checkpoints/step_00000006/model.safetensors" in previous
    assert_user_error(run_main(capsys, "pretrain", "--data", wiki_shards, "--out", out, "--steps", "2", *TINY),
                   "exists and is not empty; continue it with --resume, replace it with --overwrite")
    assert snapshot(out) == previous
    assert_user_error(run_main(capsys, "pretrain", "--out", out, "--resume", "--overwrite"), "give one of them")
    assert run_main(capsys, "pretrain", "--data", wiki_shards, "--out", out, "--steps", "2", *TINY, "--overwrite").returncode == 0
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["latest", "step_00000002"]
    records = [json.loads(line) for line in Path(os.path.join(out, "metrics.jsonl")).read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]  # nothing of the old run's six steps
    manifest = json.loads(Path(os.path.join(out, ".ptmzoo-outputs.json")).read_text())["written"]
    assert {"checkpoints", "final", "metrics.jsonl", "recipe.yaml"} <= set(manifest)


def test_predict_never_writes_over_its_input_or_an_existing_file(capsys, tmp_path):
    data = tmp_path / "new.tsv"
    data.write_text("text\nsome text\n")
    before = data.read_bytes()
    # refused before the model is even opened
    assert_user_error(run_main(capsys, "predict", str(tmp_path / "no-model"), "--file", str(data), "--out", str(data),
                        "--overwrite"), "is also an input file")
    assert data.read_bytes() == before
    existing = tmp_path / "old_predictions.tsv"
    existing.write_text("keep me\n")
    assert_user_error(run_main(capsys, "predict", str(tmp_path / "no-model"), "--file", str(data), "--out", str(existing)),
                   "exists; replace it with --overwrite")
    assert existing.read_text() == "keep me\n"
    assert_user_error(run_main(capsys, "predict", str(tmp_path / "no-model"), "--file", str(data), "--out", str(tmp_path)),
                   "is a directory; give the name of the file")


def test_an_out_that_is_a_file_is_one_line(capsys, tmp_path, wiki_shards):
    path = tmp_path / "a_file"
    path.write_text("x")
    assert_user_error(run_main(capsys, "pretrain", "--data", wiki_shards, "--out", str(path), *TINY),
                   "is a file; give a directory")
    assert path.read_text() == "x"


def test_a_failed_first_run_leaves_no_empty_out(capsys, tmp_path, wiki_shards):
    out = tmp_path / "never"
    assert_user_error(run_main(capsys, "pretrain", "--data", str(tmp_path), "--out", str(out), *TINY), "not a shard directory")
    assert not out.exists()


# ---- one writer at a time: real processes ---------------------------------------------------------
def _wait_for(condition, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_process_on_the_same_run_is_refused_at_once(tmp_path, wiki_shards):
    """Two `pretrain` processes on one --out used to interleave metrics and crash."""
    out = str(tmp_path / "run")
    first = subprocess.Popen([sys.executable, "-m", "ptmzoo", "pretrain", "--data", wiki_shards, "--out", out,
                              "--steps", "100000", *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = os.path.join(out, "metrics.jsonl")
        _wait_for(lambda: os.path.exists(metrics) and os.path.getsize(metrics) > 0)
        started = time.time()
        for extra in (["--resume"], ["--overwrite"], []):
            second = run_cli("pretrain", "--data", wiki_shards, "--out", out, "--steps", "4", *TINY, *extra)
            line = assert_user_error(second, "is being written by another ptmzoo process")
            assert f"pid {first.pid}: ptmzoo pretrain" in line
        assert time.time() - started < 60  # refused at once, not after waiting for the first run
        assert first.poll() is None  # the first run goes on, undisturbed
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 130
    finally:
        first.kill()
    steps = [record["step"] for record in map(json.loads, Path(metrics).read_text().splitlines()) if "loss" in record]
    assert steps == list(range(1, len(steps) + 1))  # one writer: no duplicated or interleaved lines


@pytest.mark.slow
def test_a_second_prepare_into_the_same_out_is_refused_at_once(tmp_path, wordpiece_tokenizer):
    tok, out = str(tmp_path / "tok"), str(tmp_path / "shards")
    wordpiece_tokenizer.save(tok)
    corpus = shared_path("en", "corpus", "kjv.txt")
    first = subprocess.Popen([sys.executable, "-m", "ptmzoo", "prepare", "--input", corpus, "--tokenizer", tok,
                              "--out", out, "--workers", "1", "--no-progress"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(n.startswith(".shards.tmp-") for n in os.listdir(tmp_path)))
        os.kill(first.pid, signal.SIGSTOP)  # held mid-write, however fast it is, while the second one starts
        try:
            second = run_cli("prepare", "--input", corpus, "--tokenizer", tok, "--out", out, "--overwrite")
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert f"pid {first.pid}: ptmzoo prepare" in assert_user_error(second, "being written by another")
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
    assert json.loads(Path(os.path.join(out, "meta.json")).read_text())["splits"]["train"]["docs"] > 0
    assert not os.path.exists(os.path.join(tmp_path, ".shards.ptmzoo-lock"))  # removed by its holder


def test_an_out_dir_in_a_folder_that_does_not_exist_yet_is_created(capsys, corpus_dir, tmp_path):
    """`--out runs/c/tok` in a new runs/c: the lock beside the output needs its parent (it failed with exit 1)."""
    out = tmp_path / "runs" / "c" / "tok"
    result = run_main(capsys, "tokenizer", "train", "--input", str(Path(corpus_dir) / "corpus.txt"), "--kind", "char",
                      "--vocab-size", "100", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "tokenizer.json").is_file() and not list((tmp_path / "runs" / "c").glob(".*lock"))
