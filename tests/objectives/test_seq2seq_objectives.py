"""Corruptions of the seq2seq objectives: T5 span corruption, BART noising, MASS -- statistics
and invariants."""

import numpy as np
import pytest

from ptmzoo.objectives.denoising import (
    infill,
    permute_sentences,
    poisson_span_lengths,
    rotate,
)
from ptmzoo.objectives.mass import fragment
from ptmzoo.objectives.span_corruption import (
    apply_span_corruption,
    random_spans_noise_mask,
)

SENTINELS = 1000 + 99 - np.arange(100)  # extra_id_0 is the largest id, as in T5


def test_span_corruption_sentinels_in_order_and_reconstruction():
    rng = np.random.default_rng(0)
    tokens = np.arange(1, 201)
    noise = random_spans_noise_mask(200, 0.15, 3.0, rng)
    inputs, targets = apply_span_corruption(tokens, noise, SENTINELS)
    spans = int((noise & ~np.concatenate([[False], noise[:-1]])).sum())
    assert list(inputs[np.isin(inputs, SENTINELS)]) == list(SENTINELS[:spans])  # numbered in order
    assert list(targets[np.isin(targets, SENTINELS)]) == list(SENTINELS[:spans])
    assert targets[0] == SENTINELS[0]
    # putting each span back in place of its sentinel gives the original text
    pieces = np.split(targets, np.flatnonzero(np.isin(targets, SENTINELS)))[1:]
    fill = {int(p[0]): list(p[1:]) for p in pieces}
    rebuilt = [t for token in inputs for t in (fill[int(token)] if token in fill else [int(token)])]
    assert rebuilt == list(tokens)


def test_span_corruption_statistics():
    rng = np.random.default_rng(1)
    fractions, span_lengths = [], []
    for length in rng.integers(50, 400, size=400):
        noise = random_spans_noise_mask(int(length), 0.15, 3.0, rng)
        fractions.append(noise.mean())
        edges = np.diff(np.concatenate([[0], noise.astype(int), [0]]))
        span_lengths += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
        assert not noise[0] and noise[-1]  # alternates non-noise, noise, ..., noise
    assert abs(np.mean(fractions) - 0.15) < 0.005
    assert abs(np.mean(span_lengths) - 3.0) < 0.15


def test_poisson_span_lengths_and_infilling():
    rng = np.random.default_rng(2)
    lengths = np.concatenate([poisson_span_lengths(300, 3.0, rng)[:-1] for _ in range(200)])  # last one is cut
    assert abs(lengths.mean() - 3.0) < 0.1 and abs(lengths.var() - 3.0) < 0.25  # Poisson: mean = variance
    assert (lengths == 0).mean() > 0.03  # e^-3 = 5% of the spans are empty insertions
    mask_id = -7
    for _ in range(50):
        tokens = np.arange(100)
        noised, spans = infill(tokens, 0.3, 3.0, mask_id, rng)
        assert spans.sum() == 30 and (noised == mask_id).sum() == len(spans)  # one mask per span, 0-length too
        kept = noised[noised != mask_id]
        assert len(kept) == 70 and np.all(np.diff(kept) > 0)  # the rest in order


def test_sentence_permutation_is_a_permutation_and_rotation_is_a_rotation():
    rng = np.random.default_rng(3)
    tokens = np.array([5, 6, 0, 7, 0, 8, 9, 10, 0, 11, 0, 12, 0])  # 0 ends a sentence
    sentences = sorted(map(tuple, np.split(tokens, np.flatnonzero(tokens == 0) + 1)[:-1]))
    moved = 0
    for _ in range(30):
        permuted = permute_sentences(tokens, tokens == 0, 1.0, rng)
        assert sorted(permuted) == sorted(tokens)
        assert sorted(map(tuple, np.split(permuted, np.flatnonzero(permuted == 0) + 1)[:-1])) == sentences
        moved += not np.array_equal(permuted, tokens)
        rotated = rotate(tokens, rng)
        shift = next(k for k in range(1, len(tokens)) if np.array_equal(np.roll(tokens, -k), rotated))
        assert 1 <= shift < len(tokens)
    assert moved > 20


def test_mass_fragment_fraction():
    rng = np.random.default_rng(4)
    fractions = []
    for length in rng.integers(10, 300, size=300):
        start, end = fragment(int(length), 0.5, rng)
        assert 0 <= start < end <= length
        fractions.append((end - start) / length)
    assert abs(np.mean(fractions) - 0.5) < 0.01


@pytest.mark.parametrize("name, options", [("span_corruption", {}), ("mass", {}),
                                           ("denoising", {"token_masking": 0.1, "token_deletion": 0.1,
                                                          "text_infilling": 0.2, "document_rotation": 0.5})])
def test_collator_batches(name, options, bpe_roberta_tokenizer):
    """The collator gives source, shifted decoder input and labels; seeded per sample."""
    from ptmzoo.objectives import PretrainCollator, build_objectives

    objective = build_objectives({name: options}, bpe_roberta_tokenizer, seed=0)[0]
    tok = bpe_roberta_tokenizer
    samples = [{"input_ids": np.asarray(tok.encode(text, add_special_tokens=False)[:60]), "epoch": 0, "index": i}
               for i, text in enumerate(["The cat sat. The dog ran! Then it rained.", "One two three four five six."])]
    batch = PretrainCollator([objective], tok.pad_id)(samples)
    again = PretrainCollator([objective], tok.pad_id)(samples)
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
    labels, decoder = batch["seq2seq_labels"].numpy(), batch["decoder_input_ids"].numpy()
    assert decoder.shape == labels.shape and batch["input_ids"].shape == batch["attention_mask"].shape
    if name == "mass":
        real = labels != -100
        assert np.all(np.isin(decoder[~real], [tok.mask_id, tok.pad_id]))  # it sees only the fragment so far
        assert np.all(batch["input_ids"].numpy()[:, :labels.shape[1]][real] == tok.mask_id)
    else:
        row = labels[0][labels[0] != -100]
        assert list(decoder[0, 1 : len(row)]) == list(row[:-1])  # teacher forcing: shifted right
        assert row[-1] == tok.eos_id
    if name == "span_corruption":
        assert batch["input_ids"].max() >= tok.vocab_size  # appended sentinels
        assert objective.extra_vocab == 100


@pytest.fixture(scope="module")
def bpe_roberta_tokenizer(english_docs):
    from ptmzoo.data.tokenizers import train_tokenizer

    return train_tokenizer(iter(english_docs[:10]), "bpe", 600, style="roberta")
