"""Inference in batches of similar length: every input once, little padding, outputs back in order."""

import random

import numpy as np
import pytest
import torch

import ptmzoo
from ptmzoo.tasks.base import MAX_PADDING_SHARE, MIN_BATCH_TOKENS, length_batches
from tests.serve.checkpoints import task_checkpoint


def padded_tokens(lengths, batches):
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_length_batches_cover_every_index_with_little_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(64)]
    batches = length_batches(lengths, 64)
    assert sorted(i for b in batches for i in b) == list(range(64))
    assert all(len(b) <= 64 for b in batches)
    for batch in batches:  # longest first; a batch pads a row by more than the share only while it is small
        longest = lengths[batch[0]]
        assert all(lengths[i] <= longest for i in batch)
        for rows, index in enumerate(batch[1:], start=1):
            if lengths[index] < (1 - MAX_PADDING_SHARE) * longest:
                assert rows * longest < MIN_BATCH_TOKENS
    real = sum(lengths)
    assert padded_tokens(lengths, batches) < 1.25 * real < 64 * max(lengths)  # one padded batch: about 2x real
    assert length_batches([7] * 10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # equal lengths: the usual batches
    assert length_batches([], 4) == []
    assert all(len(b) <= 3 for b in length_batches(lengths, 3))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, wordpiece_tokenizer):
    root = tmp_path_factory.mktemp("bucketed")
    return {"clf": task_checkpoint(str(root / "clf"), wordpiece_tokenizer, "classification", ["neg", "pos"]),
            "tag": task_checkpoint(str(root / "tag"), wordpiece_tokenizer, "tagging", ["B-PER", "I-PER", "O"])}


def texts_of_many_lengths(count=40):
    rng = random.Random(1)
    words = "the quick brown fox jumps over a lazy dog while seven old sailors sing of distant harbours".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) for _ in range(count)]


def test_outputs_come_back_in_input_order(checkpoints):
    texts = texts_of_many_lengths()
    clf = ptmzoo.load(checkpoints["clf"])
    predictor = clf.predictor()
    predictor.batch_size = 8  # several length batches
    together = clf.predict(texts)["results"]
    alone = [clf.predict([t])["results"][0] for t in texts]
    np.testing.assert_allclose([r["scores"]["pos"] for r in together], [r["scores"]["pos"] for r in alone],
                               atol=1e-5)
    embedded = clf.predict(texts, endpoint="embed")["results"]
    assert [r["tokens"] for r in embedded] == [clf.predict([t], endpoint="embed")["results"][0]["tokens"]
                                               for t in texts]
    for text, record in zip(texts[:5], embedded):
        alone_vector = clf.predict([text], endpoint="embed")["results"][0]["embedding"]
        np.testing.assert_allclose(record["embedding"], alone_vector, atol=1e-5)
    tagger = ptmzoo.load(checkpoints["tag"])
    tagger.predictor().batch_size = 8
    tagged = tagger.predict(texts)["results"]
    assert [len(r["tokens"]) for r in tagged] == [len(t.split()) for t in texts]
    tagged_alone = [tagger.predict([t])["results"][0] for t in texts]
    assert [r["predicted"] for r in tagged] == [r["predicted"] for r in tagged_alone]
    np.testing.assert_allclose([s for r in tagged for s in r["scores"]], [s for r in tagged_alone for s in r["scores"]],
                               atol=1e-5)


def test_task_predict_is_the_same_for_any_batch_size(checkpoints):
    clf = ptmzoo.load(checkpoints["clf"])
    from ptmzoo.tasks import task_of

    task = task_of(clf)
    rows = [{"text": t} for t in texts_of_many_lengths()]
    samples = task.encode(rows, "x", with_labels=False)
    one = task.predict(clf.model, samples, 1, torch.device("cpu"))
    many = task.predict(clf.model, samples, 16, torch.device("cpu"))
    np.testing.assert_allclose(one, many, atol=1e-5)
