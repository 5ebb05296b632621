"""Every task end to end on a tiny random BERT: finetune -> best checkpoint with the label
vocabulary -> `ptmzoo evaluate` and `ptmzoo predict` from the checkpoint alone; malformed rows
end with one line and exit code 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ptmzoo.checkpoint import save_pretrained
from ptmzoo.cli import main
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.loading import load
from ptmzoo.models import BertConfig, BertModel
from ptmzoo.models.model import PtmModel
from ptmzoo.tasks import TaggingOptions
from ptmzoo.tasks.tagging import read_tagged
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, wordpiece_tokenizer):
    config = BertConfig(vocab_size=wordpiece_tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    path = str(tmp_path_factory.mktemp("tiny") / "bert")
    save_pretrained(path, PtmModel("bert", BertModel(config)), wordpiece_tokenizer)
    return path


def finetune(model, out, task, train, dev, **options):
    cfg = FinetuneConfig.from_dict({"model": model, "task": task, "train_file": train, "dev_file": dev, "epochs": 1,
                                    "options": options, "train": {"batch_size": 8, "lr": 1e-3, "log_every": 1000}})
    return run_finetune(cfg, out, progress=False)


def test_tagging_with_crf_then_evaluate_and_predict(tiny_bert, tmp_path, capsys):
    with open(shared_path("en", "conll2003", "dev.txt"), encoding="utf-8") as fh:
        lines = fh.read().split("\n\n")[1:41]
    conll = tmp_path / "ner.txt"
    conll.write_text("\n\n".join(lines) + "\n")
    out = str(tmp_path / "ner")
    report = finetune(tiny_bert, out, "tagging", str(conll), str(conll), crf=True, max_length=48)
    assert report["labels"][0] == "O" and "B-PER" in report["labels"]  # IOB1 in the file, trained as BIO
    assert {"f1", "precision", "recall", "strict_f1", "token_accuracy"} <= set(report["dev"])
    with open(os.path.join(out, "predictions.dev.jsonl"), encoding="utf-8") as fh:  # per type, from the predictions
        predicted = [json.loads(line)["predicted"] for line in fh]
    gold = [r["tags"] for r in read_tagged(str(conll), TaggingOptions())]
    seqeval = pytest.importorskip("seqeval.metrics")
    expected = seqeval.classification_report(gold, predicted, output_dict=True, zero_division=0)
    assert report["per_type"] and json.loads(Path(out, "metrics.json").read_text())["per_type"] == report["per_type"]
    for type_, scores in report["per_type"].items():
        assert scores["f1"] == pytest.approx(expected[type_]["f1-score"]) and scores["support"] == expected[type_]["support"]
    with open(os.path.join(out, "per_type.tsv"), encoding="utf-8") as fh:
        assert [line.split("\t")[0] for line in fh][1:] == list(report["per_type"])
    best = load(os.path.join(out, "best"))
    assert best.task["labels"] == report["labels"] and best.model.heads["tagging"].crf is not None
    capsys.readouterr()  # the run's evaluation lines (shown without progress too)
    assert main(["evaluate", "--model", out, "--file", str(conll)]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(report["dev"]["f1"])
    metrics_file = tmp_path / "eval" / "metrics.json"
    metrics_file.parent.mkdir()
    assert main(["evaluate", "--model", out, "--file", str(conll), "--json", str(metrics_file)]) == 0
    assert json.loads(metrics_file.read_text())["per_type"] == report["per_type"]  # dev is the evaluated file
    assert (tmp_path / "eval" / "metrics.per_type.tsv").read_text() == Path(out, "per_type.tsv").read_text()
    metrics_file.unlink()  # metrics.per_type.tsv is still there: not replaced without --overwrite
    assert main(["evaluate", "--model", out, "--file", str(conll), "--json", str(metrics_file)]) == 2
    assert "the report file" in (err := capsys.readouterr().err) and "metrics.per_type.tsv" in err
    assert "choose another --json" in err
    predictions = str(tmp_path / "pred.jsonl")
    assert main(["predict", os.path.join(out, "best"), "--file", str(conll), "--out", predictions]) == 0
    with open(predictions, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    assert len(records) == len(read_tagged(str(conll), TaggingOptions())) and all(len(r["predicted"]) == len(r["tokens"]) for r in records)


def test_qa_then_predict(tiny_bert, tmp_path):
    context = "The Norman conquest of England began in 1066, led by William the Conqueror of Normandy."
    qas = [{"id": str(i), "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for i, (q, a) in enumerate([("When did it begin?", "1066"), ("Who led it?", "William the Conqueror"),
                                       ("Where was he from?", "Normandy")] * 4)]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}))
    out = str(tmp_path / "qa")
    report = finetune(tiny_bert, out, "qa", str(squad), str(squad), max_length=24, doc_stride=6)
    assert 0 <= report["dev"]["exact_match"] <= report["dev"]["f1"] <= 1
    predictions = str(tmp_path / "pred.json")
    assert main(["predict", out, "--file", str(squad), "--out", predictions]) == 0
    with open(predictions, encoding="utf-8") as fh:
        answers = json.load(fh)
    assert set(answers) == {q["id"] for q in qas} and all(a in context for a in answers.values())


@pytest.mark.parametrize("task", ["classification", "regression", "multilabel"])
def test_sentence_level_tasks(tiny_bert, tmp_path, task):
    labels = {"classification": ["x", "y", "y", "x"], "regression": ["0.5", "2.0", "3.5", "1.0"],
              "multilabel": ["a", "a,b", "", "b"]}[task]
    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(f"some text {i}\t{labels[i % 4]}\n" for i in range(16)))
    report = finetune(tiny_bert, str(tmp_path / task), task, str(data), str(data))
    expected = {"classification": ({"accuracy", "macro_f1", "mcc", "f1", "accuracy_f1", "eval_loss"}, ["x", "y"]),
                "regression": ({"pearson", "spearman", "mse"}, []),
                "multilabel": ({"micro_f1", "macro_f1", "subset_accuracy"}, ["a", "b"])}[task]
    assert (set(report["dev"]), report["labels"]) == expected
    with open(tmp_path / task / "predictions.dev.tsv", encoding="utf-8") as fh:
        assert fh.readline().startswith("text\tlabel\tprediction")
        predicted = [line.rstrip("\n").split("\t") for line in fh]
    assert len(predicted) == 16
    matrix = tmp_path / task / "confusion_matrix.png"
    if task != "classification":  # no exclusive classes: no confusion matrix
        assert not matrix.exists() and "confusion_matrix" not in report
        return
    assert matrix.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = report["labels"]
    pairs = [(cells[1], cells[2]) for cells in predicted]  # (gold, predicted)
    expected_counts = [[pairs.count((g, p)) for p in labels] for g in labels]
    assert report["confusion_matrix"] == {"labels": labels, "counts": expected_counts}
    assert json.loads((tmp_path / task / "metrics.json").read_text())["confusion_matrix"]["counts"] == expected_counts
    for name in ("first", "second"):  # evaluations beside each other: report files named after each --json
        assert main(["evaluate", str(tmp_path / task / "best"), "--file", str(data), "--json",
                     str(tmp_path / f"{name}.json")]) == 0
        assert (tmp_path / f"{name}.confusion_matrix.png").exists()
        assert json.loads((tmp_path / f"{name}.json").read_text())["confusion_matrix"]["counts"] == expected_counts


def test_malformed_rows_are_one_line_exit_2(tiny_bert, tmp_path, capsys):
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\nrejects\n")
    assert main(["finetune", "--task", "tagging", "--model", tiny_bert, "--train", str(bad), "--dev", str(bad),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.conll:2: expected a word and a tag" in err
    tags = tmp_path / "t.jsonl"
    tags.write_text('{"tokens": ["a", "b"], "tags": ["O", "B-X"]}\n{"tokens": ["a", "b"], "tags": ["O", "B-Y"]}\n')
    dev = tmp_path / "d.jsonl"
    dev.write_text('{"tokens": ["a"], "tags": ["B-Z"]}\n')
    assert main(["finetune", "--task", "tagging", "--model", tiny_bert, "--train", str(tags), "--dev", str(dev),
                 "--out", str(tmp_path / "o")]) == 2
    assert "d.jsonl:1: tag 'B-Z' is not among the training tags" in capsys.readouterr().err
    assert main(["finetune", "--task", "qa", "--model", tiny_bert, "--train", str(tags), "--dev", str(tags),
                 "--out", str(tmp_path / "o"), "--metric", "accuracy"]) == 2
    assert "the qa task has no metric 'accuracy'" in capsys.readouterr().err
