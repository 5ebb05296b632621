"""Permutation LM (XLNet): the permutation, content and query masks of small cases equal the
matrices written out by hand; partial prediction predicts exactly round(n / K) tokens, the last
ones of each factorisation order; span-based prediction takes whole words; the batch trains the
two-stream model."""

import numpy as np
import pytest
import torch

from ptmzoo.catalog import build_model
from ptmzoo.objectives.plm import (
    PermutationLM,
    PLMOptions,
    permutation_mask,
    permutation_ranks,
    span_targets,
)


def test_masks_of_a_four_token_order_by_hand():
    """Tokens 1 and 3 are predicted; the order is: the context {0, 2}, then 3, then 1."""
    ranks = np.array([2, 3, 0, 1])  # 3 comes before 1; the context's ranks do not matter
    targets = np.array([False, True, False, True])
    perm = permutation_mask(ranks, targets, np.zeros(4, dtype=bool))
    assert perm.tolist() == [[0, 1, 0, 1],   # context: sees the context only
                             [0, 1, 0, 0],   # 1 (last): sees everything but itself
                             [0, 1, 0, 1],
                             [0, 1, 0, 1]]   # 3: sees the context
    backbone = build_model("xlnet", {"vocab_size": 10, "hidden_size": 8, "num_layers": 1, "num_heads": 2,
                                     "intermediate_size": 8}).backbone
    content, query = backbone.masks(None, torch.tensor(perm)[None], 4, 0, "cpu")
    assert content.mask[0, 0].int().tolist() == [[1, 0, 1, 0],
                                                [1, 1, 1, 1],   # the content stream sees its own token
                                                [1, 0, 1, 0],
                                                [1, 0, 1, 1]]
    assert query.mask[0, 0].int().tolist() == [[1, 0, 1, 0],
                                              [1, 0, 1, 1],     # the query stream never sees its own token
                                              [1, 0, 1, 0],
                                              [1, 0, 1, 0]]
    # with a memory of 2 slots, every query sees it
    content, query = backbone.masks(None, torch.tensor(perm)[None], 4, 2, "cpu")
    assert query.mask[0, 0, :, :2].all() and query.mask[0, 0, :, 2:].int().tolist() == [[1, 0, 1, 0], [1, 0, 1, 1],
                                                                                      [1, 0, 1, 0], [1, 0, 1, 0]]


def test_masks_with_a_functional_token_by_hand():
    """Token 1 is predicted, token 4 is <cls> (functional: ordered, never predicted), order ... 1, 4."""
    ranks = np.array([4, 2, 1, 0, 3])
    perm = permutation_mask(ranks, np.array([0, 1, 0, 0, 0], bool), np.array([0, 0, 0, 0, 1], bool))
    assert perm.tolist() == [[0, 1, 0, 0, 1],
                             [0, 1, 0, 0, 1],
                             [0, 1, 0, 0, 1],
                             [0, 1, 0, 0, 1],
                             [0, 0, 0, 0, 0]]  # <cls> comes last in the order: it sees every token


def test_local_permutations_keep_the_order_of_blocks():
    rng = np.random.default_rng(0)
    ranks = permutation_ranks(10, rng, block=4)
    assert sorted(ranks[:4]) == [0, 1, 2, 3] and sorted(ranks[4:8]) == [4, 5, 6, 7] and sorted(ranks[8:]) == [8, 9]
    assert sorted(permutation_ranks(7, rng)) == list(range(7))


class CharTokenizer:
    """What the objective reads of a tokenizer: special ids and the kind (characters: every token
    starts a word)."""

    kind = "char"
    special_ids = (0, 1, 2)


def plm_batch(options: PLMOptions, rows=300, length=62, seed=0):
    objective = PermutationLM(options, CharTokenizer(), seed=seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 50, (rows, length))
    ids[:, -2], ids[:, -1] = 1, 2  # ... <sep> <cls>
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    objective.prepare(batch, [(0, i) for i in range(rows)])
    return batch


@pytest.mark.parametrize("span", [True, False])
def test_partial_prediction_predicts_exactly_the_last_1_over_k_of_each_order(span):
    batch = plm_batch(PLMOptions(partial_k=6.0, span=span))
    perm, mapping, labels = batch["perm_mask"], batch["target_mapping"], batch["plm_labels"]
    assert mapping.shape == (300, 10, 62)  # round(60 / 6) targets of the 60 real tokens
    before_target = []
    for row in range(300):
        targets = mapping[row].argmax(1)
        assert mapping[row].sum() == 10 and len(set(targets)) == 10 and (targets < 60).all()
        assert (labels[row] == batch["input_ids"][row, targets]).all()
        context = np.setdiff1d(np.arange(60), targets)
        # every target sees every context token; no context token sees a target: the targets are
        # the last 10 of the order
        assert perm[row][np.ix_(targets, context)].sum() == 0
        assert perm[row][np.ix_(context, targets)].all()
        # the targets are in a strict order among themselves: of two, exactly one sees the other
        among = 1 - perm[row][np.ix_(targets, targets)]
        assert (np.diag(among) == 0).all() and ((among + among.T)[~np.eye(10, dtype=bool)] == 1).all()
        # how many targets each one sees is 0, 1, ..., 9: a uniformly drawn order of the targets
        assert sorted(among.sum(1)) == list(range(10))
        before_target.append(among[0, 1])
    assert abs(np.mean(before_target) - 0.5) < 0.1


def test_span_prediction_takes_whole_words_and_a_fixed_num_predict():
    rng = np.random.default_rng(1)
    starts = np.zeros(300, dtype=bool)
    starts[::3] = True  # words of three tokens
    whole = 0
    for _ in range(50):
        chosen = span_targets(starts, 50, rng)
        assert chosen.sum() == 50
        words = chosen.reshape(100, 3)
        whole += words[words.all(1)].sum()
    assert whole / (50 * 50) > 0.8  # most targets lie in wholly predicted words
    batch = plm_batch(PLMOptions(num_predict=7), rows=20)
    assert batch["target_mapping"].shape == (20, 7, 62) and (batch["target_mapping"].sum((1, 2)) == 7).all()


def test_masks_change_with_the_epoch_and_not_with_the_batch():
    options = PLMOptions()
    objective = PermutationLM(options, CharTokenizer(), seed=3)
    ids = np.random.default_rng(0).integers(3, 50, (4, 30))

    def prepare(rows, keys):
        batch = {"input_ids": ids[rows].copy(), "attention_mask": np.ones((len(rows), 30), dtype=np.int64)}
        objective.prepare(batch, keys)
        return batch

    together = prepare([0, 1, 2, 3], [(0, i) for i in range(4)])
    alone = prepare([2], [(0, 2)])
    assert np.array_equal(together["perm_mask"][2], alone["perm_mask"][0])
    assert not np.array_equal(prepare([2], [(1, 2)])["perm_mask"][0], alone["perm_mask"][0])


def test_a_plm_batch_trains_the_two_stream_model():
    torch.manual_seed(0)
    model = build_model("xlnet", {"vocab_size": 50, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
                                  "intermediate_size": 48}).eval()
    objective = PermutationLM(PLMOptions(), CharTokenizer())
    objective.attach(model)
    batch = {k: torch.as_tensor(v) for k, v in plm_batch(PLMOptions(), rows=4, length=30).items()}
    out = model(**model.select_inputs(batch), targets=batch)
    logits = model(**model.select_inputs(batch)).logits  # the query stream: one row per prediction
    assert logits.shape == (4, 5, 50)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), batch["plm_labels"].reshape(-1))
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    out.loss.backward()
    assert model.backbone.mask_emb.grad is not None and model.backbone.mask_emb.grad.abs().sum() > 0
