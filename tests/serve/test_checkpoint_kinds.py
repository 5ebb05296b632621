"""Checkpoints of other kinds behind a real server: extractive QA, a quantized classifier (``ptmzoo
quantize``) and a LoRA run (``ptmzoo finetune --strategy lora``) answer over HTTP exactly what
``ptmzoo.load(path).predict`` returns."""

from __future__ import annotations

import os

import pytest

import ptmzoo
from ptmzoo.cli import main
from tests.conftest import shared_path, tiny_checkpoint
from tests.serve.checkpoints import task_checkpoint
from tests.serve.server import Server


def served(path: str, endpoint: str, body: dict) -> dict:
    """The answer of a fresh server on ``path`` to one request (the server stops with exit 0)."""
    server = Server(path)
    try:
        status, answer = server.request("POST", f"/v1/{endpoint}", body)
        assert status == 200, answer
        assert server.request("GET", "/v1/model")[1]["endpoints"][0] == endpoint
    finally:
        assert server.stop() == 0
    return answer


def test_qa_over_http_matches_predict(tmp_path, wordpiece_tokenizer):
    path = task_checkpoint(str(tmp_path / "qa"), wordpiece_tokenizer, "qa", [], {"max_length": 48})
    questions = ["Where did John go?", "Who went to Paris?"]
    context = "John Smith went to Paris in the spring, and he stayed there for a week."
    answer = served(path, "qa", {"questions": questions, "contexts": [context]})
    assert answer == ptmzoo.load(path).predict(questions, contexts=[context])
    assert len(answer["results"]) == 2
    for record in answer["results"]:
        assert record["answer"] and record["answer"] in context and isinstance(record["score"], float)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, wordpiece_tokenizer):
    root = tmp_path_factory.mktemp("kinds")
    return task_checkpoint(str(root / "clf"), wordpiece_tokenizer, "classification", ["neg", "pos"])


@pytest.mark.parametrize("method", ["dynamic-int8", "weight-int8"])
def test_quantized_classifier_over_http_matches_predict(classifier, tmp_path, method):
    from ptmzoo.compress.quantize import Int8Linear

    out = str(tmp_path / method)
    assert main(["quantize", classifier, "--method", method, "--out", out]) == 0
    model = ptmzoo.load(out)
    assert any(isinstance(m, Int8Linear) for m in model.model.modules())
    texts = ["a fine film", "a dull one", "the plot is thin but the cast is good"]
    answer = served(out, "classify", {"texts": texts})
    assert answer == model.predict(texts)
    assert len(answer["results"]) == 3 and all(r["label"] in ("neg", "pos") for r in answer["results"])


def test_lora_run_over_http_matches_predict(tmp_path, wordpiece_tokenizer):
    from ptmzoo.finetune.lora import LoRALinear

    with open(shared_path("en", "sst2", "train.tsv"), encoding="utf-8") as fh:
        lines = fh.readlines()
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("".join(lines[:41]), encoding="utf-8")
    dev.write_text(lines[0] + "".join(lines[41:61]), encoding="utf-8")
    base = tiny_checkpoint(str(tmp_path / "base"), "bert", wordpiece_tokenizer, ("mlm",))
    out = str(tmp_path / "lora")
    assert main(["finetune", "--model", base, "--train", str(train), "--dev", str(dev), "--out", out,
                 "--strategy", "lora", "--lr", "1e-2", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
                 "--text-column", "sentence", "--no-progress"]) == 0
    path = os.path.join(out, "best")
    model = ptmzoo.load(path)
    assert model.meta["delta"]["strategy"]["method"] == "lora"
    assert any(isinstance(m, LoRALinear) for m in model.model.modules())
    texts = ["a fine film", "a dull one"]
    answer = served(path, "classify", {"texts": texts})
    assert answer == model.predict(texts)
    assert {r["label"] for r in answer["results"]} <= {"0", "1"}
