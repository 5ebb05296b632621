"""Continuous batching of generation in a real ``ptmzoo serve``: requests join a batch that is
already decoding, and each gets the text it gets alone (``Model.predict``)."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from ptmzoo.serve.metrics import parse_exposition
from tests.conftest import tiny_checkpoint
from tests.serve.server import Server

LONG = {"prompts": ["Once upon a time"], "max_new_tokens": 200}  # no EOS within 200 tokens (greedy)


@pytest.fixture(scope="module")
def gpt(tmp_path_factory, bpe_tokenizer):
    return tiny_checkpoint(str(tmp_path_factory.mktemp("cbatch") / "gpt"), "gpt2", bpe_tokenizer, ("clm",))


@pytest.fixture(scope="module")
def server(gpt):
    server = Server(gpt, "--max-batch", "8")
    yield server
    server.process.kill()
    server.process.wait()


def metrics(server) -> dict[str, float]:
    return parse_exposition(server.request("GET", "/metrics")[1])


def stream_events(text: str) -> tuple[list[str], dict]:
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[-1].startswith("event: done"), events[-1]
    pieces = [json.loads(e[len("data: "):])["text"] for e in events if e.startswith("data: ")]
    return pieces, json.loads(events[-1].split("data: ", 1)[1])


def in_threads(calls) -> list:
    """Run each call in its own thread, all at once; their results in order."""
    results: list = [None] * len(calls)

    def run(i):
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def wait_until_decoding(server, rows: int = 1) -> None:
    deadline = time.monotonic() + 30
    while metrics(server)["ptmzoo_generation_rows"] < rows:
        assert time.monotonic() < deadline, "the long request never started decoding"
        time.sleep(0.005)


def test_requests_joining_a_running_batch_get_their_text_alone(server, gpt):
    import ptmzoo

    model = ptmzoo.load(gpt)
    prompt = "The king"
    plain = model.predict([prompt], max_new_tokens=16)["results"][0]["text"]
    stop = plain[len(plain) // 2 : len(plain) // 2 + 2]
    bodies = [{"prompts": ["Hello"], "max_new_tokens": 3},
              {"prompts": ["It was the best of times, it was the worst of times", "a"], "max_new_tokens": 9},
              {"prompts": [prompt], "max_new_tokens": 16, "stop": [stop]},
              {"prompts": ["Once"], "max_new_tokens": 30, "temperature": 0.8, "top_k": 20, "seed": 5},
              {"prompts": ["To be, or not"], "max_new_tokens": 12, "repetition_penalty": 1.3}]
    expected = [model.predict(**{"inputs": b["prompts"], **{k: v for k, v in b.items() if k != "prompts"}})
                for b in bodies]
    expected_long = model.predict(LONG["prompts"], max_new_tokens=200)
    stream_body = {"prompts": ["Once upon"], "max_new_tokens": 20, "stream": True}
    expected_stream = model.predict(["Once upon"], max_new_tokens=20)
    before = metrics(server)

    def long():
        return server.request("POST", "/v1/generate", LONG, timeout=60)

    def later():  # the others arrive while the long one decodes
        wait_until_decoding(server)
        return in_threads([lambda b=b: server.request("POST", "/v1/generate", b, timeout=60) for b in bodies]
                          + [lambda: server.request("POST", "/v1/generate", stream_body, timeout=60)])

    (status, long_answer), answers = in_threads([long, later])
    assert status == 200 and long_answer == expected_long
    assert long_answer["results"][0]["tokens"] == 200
    for (status, body), want in zip(answers[:-1], expected):
        assert status == 200 and body == want
    assert answers[2][1]["results"][0]["finish_reason"] == "stop"
    pieces, done = stream_events(answers[-1][1])
    assert done == expected_stream and "".join(pieces) == done["results"][0]["text"] and len(pieces) >= 2
    after = metrics(server)

    def grew(series: str) -> float:
        return after[series] - before.get(series, 0)

    # they joined while the long request was decoding, and steps ran several rows at once
    assert grew('ptmzoo_generation_joins_total{batch="running"}') >= 6
    steps, rows = grew('ptmzoo_batch_size_count{endpoint="generate"}'), grew('ptmzoo_batch_size_sum{endpoint="generate"}')
    assert steps < rows and grew('ptmzoo_batch_size_bucket{endpoint="generate",le="1"}') < steps
    assert after["ptmzoo_generation_rows"] == 0  # every row left when its request ended


def test_the_same_seed_gives_the_same_text(server, gpt):
    import ptmzoo

    body = {"prompts": ["Once upon"], "max_new_tokens": 20, "temperature": 1.0, "top_p": 0.9, "seed": 11}
    first, second = (server.request("POST", "/v1/generate", body)[1] for _ in range(2))
    alone = ptmzoo.load(gpt).predict(["Once upon"], max_new_tokens=20, temperature=1.0, top_p=0.9, seed=11)
    assert first == second == alone
    other = server.request("POST", "/v1/generate", {**body, "seed": 12})[1]
    assert other != first


def test_a_closed_stream_frees_its_row(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v1/generate", json.dumps({**LONG, "stream": True}),
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")
    connection.close()  # the client goes away after the first piece
    deadline = time.monotonic() + 20
    while metrics(server)["ptmzoo_generation_rows"] > 0:
        assert time.monotonic() < deadline, "the closed stream's row still decodes"
        time.sleep(0.01)
    status, body = server.request("POST", "/v1/generate", {"prompts": ["Hello"], "max_new_tokens": 2})
    assert status == 200 and body["results"][0]["tokens"] == 2


def test_beam_search_and_no_continuous_keep_the_whole_batch_path(gpt):
    import ptmzoo

    server = Server(gpt, "--no-continuous")
    try:
        body = {"prompts": ["Once upon"], "max_new_tokens": 6}
        status, answer = server.request("POST", "/v1/generate", body)
        assert status == 200 and answer == ptmzoo.load(gpt).predict(["Once upon"], max_new_tokens=6)
        beams = server.request("POST", "/v1/generate", {**body, "num_beams": 2})[1]
        assert beams == ptmzoo.load(gpt).predict(["Once upon"], max_new_tokens=6, num_beams=2)
        assert metrics(server)['ptmzoo_generation_joins_total{batch="empty"}'] == 0
    finally:
        assert server.stop() == 0
