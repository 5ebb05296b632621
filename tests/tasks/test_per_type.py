"""Per-entity-type scores (issue 18): the same numbers as seqeval's classification_report."""
import pytest

from ptmzoo.tasks.tagging import (
    entity_scores,
    entity_scores_by_type,
    write_per_type_tsv,
)

GOLD = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "B-PER", "O"], ["B-LOC", "I-LOC", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "O", "B-PER", "I-PER"], ["B-LOC", "I-LOC", "O"]]


def test_per_type_counts_by_hand():
    scores = entity_scores_by_type(GOLD, PRED)
    # PER: gold 2, pred 2, one right (the second is longer); LOC: gold 2, pred 1 right; ORG: gold 1, pred 2, one right
    assert scores["PER"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores["LOC"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert scores["ORG"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert list(scores) == ["LOC", "ORG", "PER"]
    assert entity_scores(GOLD, PRED)["precision"] == pytest.approx(3 / 5)


def test_per_type_equals_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    report = seqeval.classification_report(GOLD, PRED, output_dict=True, zero_division=0)
    for type_, scores in entity_scores_by_type(GOLD, PRED).items():
        for key in ("precision", "recall", "f1"):
            assert scores[key] == pytest.approx(report[type_][f"{key}-score" if key == "f1" else key])
        assert scores["support"] == report[type_]["support"]


def test_per_type_tsv(tmp_path):
    path = tmp_path / "per_type.tsv"
    write_per_type_tsv(str(path), entity_scores_by_type(GOLD, PRED))
    lines = path.read_text().splitlines()
    assert lines[0] == "type\tprecision\trecall\tf1\tsupport"
    assert lines[1] == "LOC\t1.0000\t0.5000\t0.6667\t2"
    assert len(lines) == 4
