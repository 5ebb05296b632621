"""`prepare` under pressure: a document far longer than a chunk keeps memory bounded (it is
tokenized in pieces, with the very tokens of a whole encoding), and SIGTERM cleans up and exits
with 130."""

from __future__ import annotations

import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import read_lines, shared_path

from ptmzoo.data import prepare


@pytest.mark.parametrize("tokenizer_name", ["wordpiece_tokenizer", "bpe_tokenizer", "char_tokenizer"])
def test_long_documents_in_pieces_give_the_tokens_of_one_encoding(request, monkeypatch, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    language = "zh" if tokenizer_name == "char_tokenizer" else "en"
    docs = (read_lines(shared_path("zh", "corpus", "clue_small_sampled.txt"), 40) if language == "zh"
            else read_lines(shared_path("en", "corpus", "wiki_demo.txt"), 3))
    docs = ["".join(docs)] if language == "zh" else docs  # one long spaceless Chinese document
    whole = prepare.encode_documents(tokenizer, docs)
    monkeypatch.setattr(prepare, "PIECE_CHARS", 300)
    assert all(len(prepare.piece_starts(doc)) > 10 for doc in docs)
    pieces = prepare.encode_documents(tokenizer, docs)
    for (ids, sents, _, _), (piece_ids, piece_sents, _, _) in zip(whole, pieces):
        np.testing.assert_array_equal(ids, piece_ids)
        np.testing.assert_array_equal(sents, piece_sents)


def _address_space_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.slow
def test_a_50_mb_single_line_document_prepares_within_2_gib(tmp_path, wordpiece_tokenizer):
    """One 50 MB line made `prepare` peak at 8-10 GB and abort under a 5 GB limit (7.7 GB peak
    RSS measured before the fix with this tokenizer; 1.05 GB after). Here the address space of
    the process (and of its worker) is capped at 2 GiB."""
    words = Path(shared_path("en", "corpus", "wiki_demo.txt")).read_text(encoding="utf-8").split()
    line, size = [], 0
    for word in itertools.cycle(words):
        line.append(word)
        size += len(word) + 1
        if size >= 50_000_000:
            break
    corpus = tmp_path / "one_line.txt"
    corpus.write_text(" ".join(line) + "\n", encoding="utf-8")
    tok, out = str(tmp_path / "tok"), str(tmp_path / "shards")
    wordpiece_tokenizer.save(tok)
    result = subprocess.run([sys.executable, "-m", "ptmzoo", "prepare", "--input", str(corpus), "--tokenizer", tok,
                             "--out", out, "--workers", "2", "--no-progress", "--valid-fraction", "0"],
                            capture_output=True, text=True, check=False, preexec_fn=_address_space_limit(2 << 30))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 1 documents, 14,0" in result.stdout  # ~14 million tokens in one document


def test_sigterm_during_prepare_cleans_up_and_exits_130(tmp_path, wordpiece_tokenizer):
    """SIGTERM used to kill `prepare` at once (BrokenPipeError from the workers) and leave a partial
    `.OUT.tmp-*` directory."""
    tok, out = str(tmp_path / "tok"), str(tmp_path / "shards")
    wordpiece_tokenizer.save(tok)
    corpus = shared_path("en", "corpus", "kjv.txt")
    process = subprocess.Popen([sys.executable, "-m", "ptmzoo", "prepare", "--input", corpus, corpus, "--tokenizer",
                                tok, "--out", out, "--workers", "2", "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(n.startswith(".shards.tmp-") and os.listdir(tmp_path / n) for n in os.listdir(tmp_path)):
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)
    time.sleep(0.5)  # inside the tokenization, workers busy
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "interrupted" and "Error" not in stderr
    assert sorted(os.listdir(tmp_path)) == ["tok"]  # no partial .shards.tmp-*, no shards, no lock file


def _chunks_then(failure, n_chunks=1):
    """Chunks of two short documents, then ``failure()`` (a reader that fails or a worker's death)."""
    for k in range(n_chunks):
        yield [f"document {k} one.", f"document {k} two."], k
    failure()


def _no_worker_left():
    import multiprocessing

    return not [p for p in multiprocessing.active_children() if p.name == "ptmzoo-prepare"]


def test_a_reader_error_right_after_the_workers_start_ends_them_at_once(tmp_path, wordpiece_tokenizer):
    """multiprocessing.Pool's terminate() sent SIGTERM to workers forked a moment earlier; one that
    got it before its handler was reset lost it, and the parent waited for it forever (CI hung in
    the GBK-corpus test). The workers are now killed outright; 20 rounds here, each within seconds."""
    tok = str(tmp_path / "tok")
    wordpiece_tokenizer.save(tok)

    def bad_byte():
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the workers did not end"))
    try:
        for _ in range(20):
            signal.alarm(30)
            with pytest.raises(UnicodeDecodeError):
                list(prepare._results_in_order(_chunks_then(bad_byte, 0), wordpiece_tokenizer, tok, 2))
            assert _no_worker_left()
    finally:
        signal.alarm(0)


def test_results_come_back_in_corpus_order_and_a_dead_worker_is_one_clear_error(tmp_path, wordpiece_tokenizer):
    import multiprocessing

    from ptmzoo.errors import UserError

    tok = str(tmp_path / "tok")
    wordpiece_tokenizer.save(tok)
    in_order = list(prepare._results_in_order(_chunks_then(lambda: None, 7), wordpiece_tokenizer, tok, 3))
    assert [position for _, position in in_order] == list(range(7))
    alone = [prepare.encode_documents(wordpiece_tokenizer, [f"document {k} one.", f"document {k} two."])
             for k in range(7)]
    for (result, _), expected in zip(in_order, alone):
        for (ids, sents, _, _), (want_ids, want_sents, _, _) in zip(result, expected):
            np.testing.assert_array_equal(ids, want_ids)
            np.testing.assert_array_equal(sents, want_sents)

    def chunks():  # the workers die (as the kernel's OOM killer would end them) while chunks are in flight
        yield from _chunks_then(lambda: None, 2)
        for process in multiprocessing.active_children():
            if process.name == "ptmzoo-prepare":
                os.kill(process.pid, signal.SIGKILL)
        yield ["after the kill."], 2

    with pytest.raises(UserError, match=r"a prepare worker process died \(exit code -9.*--workers 1"):
        list(prepare._results_in_order(chunks(), wordpiece_tokenizer, tok, 2))
    assert _no_worker_left()
