"""The command line as users run it: one clear line and exit code 2 for every user mistake,
and a tiny pretrain -> finetune -> evaluate run end to end."""

import json
import os

import pytest

from tests.conftest import assert_user_error as _assert_user_error
from tests.conftest import run_cli, shared_path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, wiki_shards):
    """A bert-tiny pre-trained for a few steps through the CLI."""
    out = str(tmp_path_factory.mktemp("cli") / "bert")
    result = run_cli("pretrain", "--preset", "bert-tiny", "--data", wiki_shards, "--out", out, "--steps", "8",
                     "--batch-size", "8", "--seq-len", "64", "--no-progress", "train.eval_every=4", "train.log_every=2")
    assert result.returncode == 0, result.stderr
    assert "pre-trained bert-tiny for 8 steps" in result.stdout
    return out


def test_pretrain_writes_final_model_metrics_and_checkpoint(tiny_run):
    files = set(os.listdir(tiny_run))
    assert {"final", "checkpoints", "metrics.jsonl", "recipe.yaml"} <= files
    records = [json.loads(line) for line in open(os.path.join(tiny_run, "metrics.jsonl"))]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert all(r["tokens_per_s"] > 0 and "loss_mlm" in r and "loss_nsp" in r for r in train)
    assert any("eval_ppl" in r for r in records)
    meta = json.load(open(os.path.join(tiny_run, "final", "ptmzoo.json")))
    assert meta["family"] == "bert" and set(meta["heads"]) == {"mlm", "nsp"}


def test_finetune_then_evaluate(tiny_run, tmp_path, wiki_shards):
    train = shared_path("en", "sst2", "train.tsv")
    dev_rows = open(shared_path("en", "sst2", "dev.tsv")).read().splitlines()[:201]
    dev = tmp_path / "dev.tsv"
    dev.write_text("\n".join(dev_rows) + "\n")
    out = str(tmp_path / "ft")
    result = run_cli("finetune", "--model", tiny_run, "--train", train, "--dev", str(dev), "--test", str(dev),
                     "--text-column", "sentence", "--out", out, "--epochs", "1", "--max-train-examples", "256",
                     "--batch-size", "32", "--no-progress")
    assert result.returncode == 0, result.stderr
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["train_examples"] == 256 and metrics["labels"] == ["0", "1"]
    assert 0 <= metrics["dev"]["accuracy"] <= 1 and metrics["dev"] == metrics["test"]
    predictions = open(os.path.join(out, "predictions.dev.tsv")).read().splitlines()
    assert predictions[0] == "sentence\tlabel\tprediction\tconfidence" and len(predictions) == 201
    evaluated = run_cli("evaluate", "--model", out, "--file", str(dev))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(metrics["dev"]["accuracy"])
    lm = run_cli("evaluate", "--model", tiny_run, "--data", wiki_shards)
    assert lm.returncode == 0, lm.stderr
    lm_metrics = json.loads(lm.stdout)
    assert lm_metrics["eval_ppl"] > 1 and lm_metrics["eval_loss"] > lm_metrics["eval_loss_nsp"]

def test_user_errors_are_one_line_with_exit_code_2(tmp_path, tiny_run, wiki_shards):
    missing = str(tmp_path / "missing.txt")
    _assert_user_error(run_cli("prepare", "--input", missing, "--tokenizer", tiny_run, "--out", str(tmp_path / "s")),
                       "corpus file not found")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _assert_user_error(run_cli("tokenizer", "train", "--input", str(empty), "--kind", "char", "--out",
                               str(tmp_path / "t")), "empty")
    _assert_user_error(run_cli("pretrain", "--preset", "bert-tiniest", "--data", wiki_shards, "--out",
                               str(tmp_path / "r")), "unknown preset 'bert-tiniest'; did you mean bert-tiny")
    _assert_user_error(run_cli("pretrain", "--preset", "bert-tiny", "--data", wiki_shards, "--out",
                               str(tmp_path / "r"), "train.learning_rate=1"), "unknown key 'train.learning_rate'")
    _assert_user_error(run_cli("pretrain", "--preset", "gpt2-tiny", "--data", wiki_shards, "--out",
                               str(tmp_path / "r"), "--objectives", "mlm"), "needs a bidirectional encoder")
    _assert_user_error(run_cli("pretrain", "--preset", "bert-tiny", "--data", str(tmp_path), "--out",
                               str(tmp_path / "r")), "not a shard directory")
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    _assert_user_error(run_cli("finetune", "--model", tiny_run, "--train", str(dev), "--dev", str(dev), "--out",
                               str(tmp_path / "f"), "--text-column", "text"),
                       "column 'text' not found in dev.tsv \\(columns: sentence, label\\)")
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    _assert_user_error(run_cli("finetune", "--model", tiny_run, "--train", str(ragged), "--dev", str(dev), "--out",
                               str(tmp_path / "f"), "--text-column", "sentence"), "ragged.tsv:3: expected 2 TSV fields")
    _assert_user_error(run_cli("finetune", "--model", str(tmp_path), "--train", str(dev), "--dev", str(dev),
                               "--out", str(tmp_path / "f")), "not a ptmzoo checkpoint")
    corrupt = tmp_path / "corrupt"
    os.system(f"cp -r {tiny_run}/final {corrupt}")
    (corrupt / "model.safetensors").write_bytes(b"garbage")
    _assert_user_error(run_cli("evaluate", "--model", str(corrupt), "--data", wiki_shards), "corrupt")


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "prepare", "--input", str(tmp_path / "x"), "--tokenizer", "t", "--out", "o")
    assert result.returncode == 2 and "Traceback" in result.stderr and "error: corpus file not found" in result.stderr
