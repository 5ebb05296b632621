"""`ptmzoo predict` for a tagging model reads the inputs users have -- plain text (one sentence a
line), CoNLL without tags, JSONL `{"text"}` split by the model's own word rule -- and writes tag
names with each word's score (and the entities' character spans for text inputs)."""

from __future__ import annotations

import json
import os

import pytest

from ptmzoo.cli import main
from ptmzoo.finetune.run import FinetuneConfig, predict_file, run_finetune
from ptmzoo.loading import load
from ptmzoo.tasks.tagging import plain_text_lines
from tests.conftest import shared_path, tiny_checkpoint


def train_tagger(model: str, train: str, out: str) -> str:
    cfg = FinetuneConfig.from_dict({"model": model, "task": "tagging", "train_file": train, "dev_file": train,
                                    "epochs": 1, "options": {"max_length": 48},
                                    "train": {"batch_size": 8, "lr": 1e-3, "log_every": 1000}})
    run_finetune(cfg, out, progress=False)
    return os.path.join(out, "best")


@pytest.fixture(scope="module")
def english_tagger(tmp_path_factory, wordpiece_tokenizer):
    root = tmp_path_factory.mktemp("en_tagger")
    model = tiny_checkpoint(str(root / "bert"), "bert", wordpiece_tokenizer, ("mlm",))
    with open(shared_path("en", "conll2003", "dev.txt"), encoding="utf-8") as fh:
        sentences = fh.read().split("\n\n")[1:25]
    conll = root / "train.txt"
    conll.write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    return train_tagger(model, str(conll), str(root / "run"))


@pytest.fixture(scope="module")
def chinese_tagger(tmp_path_factory, char_tokenizer):
    root = tmp_path_factory.mktemp("zh_tagger")
    model = tiny_checkpoint(str(root / "bert"), "bert", char_tokenizer, ("mlm",))
    sentences = [("在北京工作", "O B-LOC I-LOC O O"), ("上海很大", "B-LOC I-LOC O O")] * 4
    conll = root / "train.conll"
    conll.write_text("\n\n".join("\n".join(f"{c} {t}" for c, t in zip(text, tags.split())) for text, tags in sentences)
                     + "\n", encoding="utf-8")
    return train_tagger(model, str(conll), str(root / "run"))


def predict(model: str, path, tmp_path, *flags: str) -> list[dict]:
    out = tmp_path / "pred.jsonl"
    assert main(["predict", model, "--file", str(path), "--out", str(out), "--overwrite", *flags]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def check_names_and_scores(records: list[dict], labels: list[str]) -> None:
    for record in records:
        assert len(record["predicted"]) == len(record["tokens"]) == len(record["scores"])
        assert set(record["predicted"]) <= set(labels)  # names, not ids
        assert all(0 < s <= 1 for s in record["scores"])
        assert len(record["entity_scores"]) == len(record["entities"])


def test_plain_text_one_sentence_a_line(english_tagger, tmp_path):
    labels = load(english_tagger).task["labels"]
    text = tmp_path / "sentences.txt"
    text.write_text("EU rejects German call to boycott British lamb .\n\nPeter Blackburn visited U.S. troops\n",
                    encoding="utf-8")
    assert plain_text_lines(str(text), labels)
    records = predict(english_tagger, text, tmp_path)
    assert [r["tokens"] for r in records] == [["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb",
                                               "."], ["Peter", "Blackburn", "visited", "U.S.", "troops"]]
    check_names_and_scores(records, labels)
    assert records[1]["text"] == "Peter Blackburn visited U.S. troops"
    for span in (s for r in records for s in r["spans"]):
        assert span["text"] == records[1 if span in records[1]["spans"] else 0]["text"][span["start"]:span["end"]]
    # the same file named as text explicitly: the same rows
    assert [r["tokens"] for r in predict(english_tagger, text, tmp_path, "--format", "text")] == \
        [r["tokens"] for r in records]


def test_conll_without_tags_and_with_tags(english_tagger, tmp_path):
    labels = load(english_tagger).task["labels"]
    untagged = tmp_path / "untagged.txt"
    untagged.write_text("EU\nrejects\nGerman\ncall\n\nPeter\nBlackburn\n", encoding="utf-8")
    assert not plain_text_lines(str(untagged), labels)
    records = predict(english_tagger, untagged, tmp_path)
    assert [r["tokens"] for r in records] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert all("tags" not in r for r in records)
    check_names_and_scores(records, labels)
    tagged = tmp_path / "tagged.txt"
    tagged.write_text("EU NNP I-ORG\nrejects VBZ O\n\nPeter NNP I-PER\n", encoding="utf-8")
    assert not plain_text_lines(str(tagged), labels)
    records = predict(english_tagger, tagged, tmp_path)
    assert records[0]["tags"] == ["B-ORG", "O"] and records[1]["tokens"] == ["Peter"]  # IOB1 read as BIO
    other = tmp_path / "other_tags.txt"
    other.write_text("Paris B-CITY\nis O\n\nnice O\n", encoding="utf-8")  # tags the model does not know
    assert not plain_text_lines(str(other), labels)


def test_jsonl_text_is_split_by_the_model_word_rule(english_tagger, tmp_path):
    """An English WordPiece model: words and punctuation (BERT's pre-tokenizer), not characters."""
    labels = load(english_tagger).task["labels"]
    data = tmp_path / "inputs.jsonl"
    texts = ["Peter Blackburn visited the U.S. troops, again.", "EU rejects it"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    records = predict(english_tagger, data, tmp_path)
    assert records[0]["tokens"] == ["Peter", "Blackburn", "visited", "the", "U", ".", "S", ".", "troops", ",",
                                    "again", "."]
    assert records[1]["tokens"] == ["EU", "rejects", "it"] and records[1]["text"] == texts[1]
    check_names_and_scores(records, labels)


def test_chinese_plain_text_and_jsonl_are_characters(chinese_tagger, tmp_path):
    labels = load(chinese_tagger).task["labels"]
    text = tmp_path / "zh.txt"
    text.write_text("我在北京工作\n上海 很大\n", encoding="utf-8")
    records = predict(chinese_tagger, text, tmp_path)
    assert [r["tokens"] for r in records] == [list("我在北京工作"), list("上海很大")]
    check_names_and_scores(records, labels)
    data = tmp_path / "zh.jsonl"
    data.write_text(json.dumps({"id": 7, "text": "我在北京工作"}, ensure_ascii=False) + "\n", encoding="utf-8")
    records = predict(chinese_tagger, data, tmp_path)
    assert records[0]["tokens"] == list("我在北京工作") and records[0]["id"] == 7  # CLUENER's test rows
    assert "offsets" not in records[0]  # the spans carry them
    for span in records[0]["spans"]:
        assert span["text"] == "我在北京工作"[span["start"]:span["end"]] and 0 < span["score"] <= 1


def test_gbk_plain_text_with_encoding(chinese_tagger, tmp_path, capsys):
    from tests.conftest import assert_user_error, run_main

    text = tmp_path / "zh.txt"
    text.write_bytes("我在北京工作\n".encode("gbk"))
    assert_user_error(run_main(capsys, "predict", chinese_tagger, "--file", str(text), "--out",
                               str(tmp_path / "p.jsonl")), "not UTF-8 text.*--encoding gb18030")
    records = predict(chinese_tagger, text, tmp_path, "--encoding", "gbk")
    assert records[0]["tokens"] == list("我在北京工作")


def test_classification_refuses_plain_text_format(tmp_path, tiny_bert):
    data = tmp_path / "d.tsv"
    data.write_text("text\tlabel\n" + "".join(f"some text {i}\t{'xy'[i % 2]}\n" for i in range(8)), encoding="utf-8")
    cfg = FinetuneConfig.from_dict({"model": tiny_bert, "train_file": str(data), "dev_file": str(data), "epochs": 1,
                                    "train": {"batch_size": 8, "log_every": 1000}})
    run_finetune(cfg, str(tmp_path / "run"), progress=False)
    from ptmzoo.errors import UserError

    with pytest.raises(UserError, match="--format text .* is an input of tagging models"):
        predict_file(load(str(tmp_path / "run" / "best")), str(data), str(tmp_path / "p.tsv"), fmt="text")
    out = tmp_path / "p.tsv"
    predict_file(load(str(tmp_path / "run" / "best")), str(data), str(out))
    header, first = out.read_text(encoding="utf-8").splitlines()[:2]
    assert header == "text\tlabel\tprediction\tconfidence"  # label names and a score, as before
    assert first.split("\t")[2] in ("x", "y") and 0.5 <= float(first.split("\t")[3]) <= 1


def test_multilabel_predictions_carry_the_names_and_scores_of_the_labels():
    from types import SimpleNamespace

    import numpy as np

    from ptmzoo.tasks import MultiLabelTask

    task = SimpleNamespace(labels=["sports", "news", "tech"], options=SimpleNamespace(label_separator=","))
    record = MultiLabelTask.record(task, np.array([0.9, 0.2, 0.51]))
    assert record == {"labels": ["sports", "tech"], "scores": {"sports": 0.9, "news": 0.2, "tech": 0.51}}
    cells = MultiLabelTask.prediction_cells(task, record)
    assert cells == ["sports,tech", "0.9000,0.5100"] and MultiLabelTask.prediction_header == ("prediction", "scores")
