import json
import os

import numpy as np
import pytest

from ptmzoo.data.prepare import prepare_corpus
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.errors import UserError
from tests.conftest import make_shards, read_lines, shared_path


def test_documents_round_trip_through_shards(wiki_shards, wordpiece_tokenizer):
    docs = read_lines(shared_path("en", "corpus", "wiki_demo.txt"))
    corpus = ShardedCorpus(wiki_shards)
    train, valid = corpus.split("train"), corpus.split("valid")
    assert train.num_docs + valid.num_docs == len(docs)
    assert valid.num_docs == 3  # every 10th document, evenly spread
    assert corpus.meta["dtype"] == "uint16"
    # the held-out documents are docs 9, 19, 29; the rest are in order in train
    train_docs = [d for i, d in enumerate(docs) if (i + 1) % 10 != 0]
    for d in (0, 5, len(train_docs) - 1):
        expected = wordpiece_tokenizer.encode(train_docs[d], add_special_tokens=False)
        assert train.doc(d).tolist() == expected
    assert valid.doc(0).tolist() == wordpiece_tokenizer.encode(docs[9], add_special_tokens=False)
    assert corpus.tokenizer().fingerprint() == wordpiece_tokenizer.fingerprint()


def test_sentence_boundaries_are_recorded(wiki_shards, wordpiece_tokenizer):
    split = ShardedCorpus(wiki_shards).split("train")
    starts = split.sentence_starts(0)
    assert starts[0] == 0 and len(starts) > 10 and np.all(np.diff(starts) > 0)
    tokens = split.doc(0)
    # a sentence start follows a sentence-final token
    period = wordpiece_tokenizer.backend.token_to_id(".")
    assert np.mean(tokens[starts[1:] - 1] == period) > 0.8


def test_parallel_workers_and_small_shards_give_identical_tokens(tmp_path, bpe_tokenizer):
    corpus = shared_path("en", "corpus", "c4_demo.jsonl")
    one = make_shards(str(tmp_path / "a"), bpe_tokenizer, corpus, workers=1)
    two = make_shards(str(tmp_path / "b"), bpe_tokenizer, corpus, workers=2, shard_tokens=20_000)
    a, b = ShardedCorpus(one).split("train"), ShardedCorpus(two).split("train")
    assert len(ShardedCorpus(two).meta["splits"]["train"]["shards"]) > 3
    assert a.num_docs == b.num_docs and a.num_tokens == b.num_tokens
    for d in range(0, a.num_docs, 37):
        assert np.array_equal(a.doc(d), b.doc(d))
        assert np.array_equal(a.sentence_starts(d), b.sentence_starts(d))


def test_refuses_to_overwrite_and_detects_damage(tmp_path, wordpiece_tokenizer, wiki_shards):
    tok_dir = str(tmp_path / "tok")
    wordpiece_tokenizer.save(tok_dir)
    with pytest.raises(UserError, match="already exists"):
        prepare_corpus([shared_path("en", "corpus", "wiki_demo.txt")], tok_dir, wiki_shards, progress=False)
    with pytest.raises(UserError, match="not a shard directory"):
        ShardedCorpus(str(tmp_path))
    damaged = tmp_path / "damaged"
    os.system(f"cp -r {wiki_shards} {damaged}")
    with open(damaged / "train" / "00000.bin", "ab") as fh:
        fh.write(b"\0\0")
    with pytest.raises(UserError, match="damaged"):
        ShardedCorpus(str(damaged)).split("train")
    meta = json.loads((damaged / "meta.json").read_text())
    meta["format"] = "something-else"
    (damaged / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="not a ptmzoo shard directory"):
        ShardedCorpus(str(damaged))


def test_failed_prepare_leaves_nothing_behind(tmp_path, wordpiece_tokenizer):
    tok_dir = str(tmp_path / "tok")
    wordpiece_tokenizer.save(tok_dir)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"other": 1}\n')
    with pytest.raises(UserError):
        prepare_corpus([str(bad)], tok_dir, str(tmp_path / "out"), progress=False)
    assert not os.path.exists(tmp_path / "out")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".out")]
