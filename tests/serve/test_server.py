"""A real ``ptmzoo serve`` process on a free loopback port, spoken to over HTTP (stdlib only)."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from ptmzoo.serve.metrics import parse_exposition
from tests.conftest import tiny_checkpoint
from tests.serve.checkpoints import task_checkpoint
from tests.serve.server import Server


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, wordpiece_tokenizer, bpe_tokenizer):
    root = tmp_path_factory.mktemp("serve")
    return {"clf": task_checkpoint(str(root / "clf"), wordpiece_tokenizer, "classification", ["neg", "pos"]),
            "tag": task_checkpoint(str(root / "tag"), wordpiece_tokenizer, "tagging", ["B-PER", "I-PER", "O"]),
            "mlm": tiny_checkpoint(str(root / "mlm"), "bert", wordpiece_tokenizer, ("mlm",)),
            "gpt": tiny_checkpoint(str(root / "gpt"), "gpt2", bpe_tokenizer, ("clm",))}


@pytest.fixture(scope="module")
def classifier(checkpoints):
    server = Server(checkpoints["clf"], "--max-batch", "16", "--max-wait-ms", "50", "--max-chars", "100",
                    "--max-texts", "8", "--max-body-kb", "4")
    yield server
    server.process.kill()
    server.process.wait()


def test_classify_matches_predict(classifier, checkpoints):
    import ptmzoo

    texts = ["a fine film", "a dull one"]
    status, body = classifier.request("POST", "/v1/classify", {"texts": texts})
    assert status == 200
    assert body == ptmzoo.load(checkpoints["clf"]).predict(texts)  # the same object
    assert body["results"][0]["label"] in ("neg", "pos")
    assert abs(sum(body["results"][0]["scores"].values()) - 1) < 1e-5
    status, model = classifier.request("GET", "/v1/model")
    assert model["task"] == "classification" and model["labels"] == ["neg", "pos"]
    assert model["endpoints"] == ["classify", "embed"] and model["limits"]["max_chars"] == 100


def test_embed(classifier):
    status, body = classifier.request("POST", "/v1/embed", {"texts": ["one", "two words"], "normalize": True})
    assert status == 200 and len(body["results"]) == 2
    vector = body["results"][0]["embedding"]
    assert len(vector) == 32 and abs(sum(v * v for v in vector) - 1) < 1e-4


@pytest.mark.parametrize(("path", "body", "raw", "status", "code"), [
    ("/v1/classify", None, b"{not json", 400, "malformed_json"),
    ("/v1/classify", None, b"", 400, "malformed_json"),
    ("/v1/classify", {"texts": "x", "extra": 1}, None, 422, "unknown_field"),
    ("/v1/classify", {"texts": [1, 2]}, None, 422, "wrong_type"),
    ("/v1/classify", {"texts": []}, None, 422, "empty_input"),
    ("/v1/classify", {"texts": ["   "]}, None, 422, "empty_input"),
    ("/v1/classify", {"texts": ["a"] * 9}, None, 413, "too_many_texts"),
    ("/v1/classify", {"texts": ["a" * 101]}, None, 413, "text_too_long"),
    ("/v1/classify", {"texts": ["a"], "pairs": ["b"]}, None, 422, "invalid_request"),
    ("/v1/classify", [1], None, 422, "wrong_type"),
    ("/v1/classify", None, b'{"texts": ["' + b"a" * 5000 + b'"]}', 413, "body_too_large"),
    ("/v1/nothing", {"texts": ["a"]}, None, 404, "unknown_endpoint"),
    ("/v1/tag", {"texts": ["a"]}, None, 404, "not_served"),
    ("/v1/generate", {"prompts": ["a"]}, None, 404, "not_served"),
    ("/elsewhere", None, None, 404, "unknown_path"),
])
def test_bad_requests_get_4xx_json(classifier, path, body, raw, status, code):
    got, answer = classifier.request("POST" if path != "/elsewhere" else "GET", path, body, raw)
    assert got == status, answer
    assert answer["error"]["code"] == code and answer["error"]["message"]
    assert classifier.request("GET", "/health")[0] == 200


def test_concurrent_requests_share_a_forward_pass(classifier):
    results, errors = [], []

    def one(i):
        try:
            results.append(classifier.request("POST", "/v1/classify", {"texts": [f"text number {i}"]}))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(status == 200 for status, _ in results) and len(results) == 12
    metrics = parse_exposition(classifier.request("GET", "/metrics")[1])
    batches = metrics['ptmzoo_batch_size_count{endpoint="classify"}']
    texts = metrics['ptmzoo_batch_size_sum{endpoint="classify"}']
    assert texts >= 12 and batches < texts  # some passes held more than one text
    assert metrics['ptmzoo_requests_total{endpoint="classify",status="200"}'] >= 12
    assert metrics['ptmzoo_tokens_total{endpoint="classify"}'] > 0


def test_tagging_and_fill_mask(checkpoints):
    import ptmzoo

    server = Server(checkpoints["tag"])
    try:
        status, body = server.request("POST", "/v1/tag", {"texts": ["John Smith went to Paris"]})
        assert status == 200 and body == ptmzoo.load(checkpoints["tag"]).predict(["John Smith went to Paris"])
    finally:
        assert server.stop() == 0
    model = ptmzoo.load(checkpoints["mlm"])
    records = model.predict(["the [MASK] is red"], top_k=3)["results"]
    assert len(records[0]["masks"]) == 1 and len(records[0]["masks"][0]["candidates"]) == 3


def test_generate_stream_and_sigterm_during_request(checkpoints):
    import ptmzoo

    server = Server(checkpoints["gpt"])
    try:
        status, body = server.request("POST", "/v1/generate", {"prompts": ["Once upon"], "max_new_tokens": 5})
        assert status == 200
        assert body == ptmzoo.load(checkpoints["gpt"]).predict(["Once upon"], max_new_tokens=5)
        status, text = server.request("POST", "/v1/generate", {"prompts": ["Once upon"], "max_new_tokens": 5,
                                                               "stream": True})
        events = [block for block in text.split("\n\n") if block.strip()]
        pieces = [json.loads(e[len("data: "):])["text"] for e in events if e.startswith("data: ")]
        assert events[-1].startswith("event: done")
        done = json.loads(events[-1].split("data: ", 1)[1])
        assert "".join(pieces) == done["results"][0]["text"] == body["results"][0]["text"]
        assert len(pieces) >= 2  # token by token
        answer = {}

        def slow():
            answer["reply"] = server.request("POST", "/v1/generate", {"prompts": ["Once upon a time"],
                                                                      "max_new_tokens": 200}, timeout=60)

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert server.process.wait(timeout=60) == 0
        assert answer["reply"][0] == 200 and answer["reply"][1]["results"][0]["tokens"] == 200
    finally:
        if server.process.poll() is None:
            server.process.kill()
