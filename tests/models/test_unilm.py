"""UniLM: the four self-attention masks, the per-batch mask sampling, training, cached decoding."""

import numpy as np
import pytest
import torch

from ptmzoo.catalog import HEADS, build_model
from ptmzoo.generation.unilm import generate_unilm, seq2seq_batch
from ptmzoo.models.unilm import UnilmConfig, UnilmModel
from ptmzoo.nn.attention import unified_mask
from tests.generation.generation_helpers import unilm_cached_and_full_logits

PAD = [[1, 1, 1, 1, 0]]  # four tokens and one pad
TYPES = [[0, 0, 1, 1, 0]]  # source: 2 tokens, target: 2


def matrix(kind):
    return unified_mask(kind, torch.tensor(PAD), torch.tensor(TYPES))[0].int().tolist()


def test_bidirectional_mask_hides_padding_only():
    assert matrix("bidirectional") == [[1, 1, 1, 1, 0]] * 4 + [[1, 1, 1, 1, 1]]  # a pad query sees itself


def test_left_to_right_and_right_to_left_masks():
    assert matrix("left_to_right") == [[1, 0, 0, 0, 0],
                                       [1, 1, 0, 0, 0],
                                       [1, 1, 1, 0, 0],
                                       [1, 1, 1, 1, 0],
                                       [1, 1, 1, 1, 1]]
    assert matrix("right_to_left") == [[1, 1, 1, 1, 0],
                                       [0, 1, 1, 1, 0],
                                       [0, 0, 1, 1, 0],
                                       [0, 0, 0, 1, 0],
                                       [0, 0, 0, 0, 1]]


def test_seq2seq_mask_source_never_sees_target():
    assert matrix("seq2seq") == [[1, 1, 0, 0, 0],  # source: the whole source, no target
                                 [1, 1, 0, 0, 0],
                                 [1, 1, 1, 0, 0],  # target: the source and the target so far
                                 [1, 1, 1, 1, 0],
                                 [1, 1, 1, 1, 1]]  # a pad query: its row is unused, only never empty


def test_mask_kind_proportions(wordpiece_tokenizer):
    from ptmzoo.objectives.unilm import UnifiedLM, UniLMOptions

    objective = UnifiedLM(UniLMOptions(), wordpiece_tokenizer, seed=3)
    kinds = [objective.mask_kind([(epoch, index)]) for epoch in range(3) for index in range(2000)]
    counts = {kind: kinds.count(kind) / len(kinds) for kind in set(kinds)}
    n = len(kinds)
    for kind, share in (("bidirectional", 1 / 3), ("seq2seq", 1 / 3), ("left_to_right", 1 / 6),
                        ("right_to_left", 1 / 6)):
        assert abs(counts[kind] - share) < 4 * np.sqrt(share * (1 - share) / n), (kind, counts)
    assert objective.mask_kind([(0, 5)]) == objective.mask_kind([(0, 5)])  # reproducible per batch


def tiny_model(vocab=50):
    torch.manual_seed(0)
    config = UnilmConfig(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                         max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)
    model = build_model("unilm", backbone=UnilmModel(config))
    model.add_head("unilm", HEADS["mlm"])
    model.add_head("nsp", HEADS["nsp"])
    return model


def test_unilm_objective_batches_train(wordpiece_tokenizer):
    from ptmzoo.objectives.unilm import UnifiedLM, UniLMOptions

    tok = wordpiece_tokenizer
    objective = UnifiedLM(UniLMOptions(), tok, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(10, tok.vocab_size, size=(4, 12))
    ids[:, 0], ids[:, 6], ids[:, 11] = tok.role_id("cls"), tok.role_id("sep"), tok.role_id("sep")
    model = tiny_model(tok.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses, kinds = [], set()
    for step in range(30):
        batch = {"input_ids": ids.copy(), "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.repeat([[0] * 7 + [1] * 5], 4, axis=0), "nsp_labels": np.zeros(4, dtype=np.int64)}
        keys = [(step % 3, row) for row in range(4)]
        objective.prepare(batch, keys)
        kinds.add(objective.mask_kind(keys))
        assert batch["attention_mask"].shape == (4, 12, 12)
        assert ("nsp_labels" in batch) == (objective.mask_kind(keys) == "bidirectional")
        batch = {k: torch.from_numpy(v) for k, v in batch.items()}
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], targets=batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss_sums["unilm"].item() / int((batch["mlm_labels"] != -100).sum()))
    assert len(kinds) >= 2
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_tokens_per_second_counts_real_tokens_not_mask_entries(wordpiece_tokenizer):
    """The [B, L, L] unified mask must not inflate the trainer's token count (it once summed L x L)."""
    from ptmzoo.catalog import build_backbone
    from ptmzoo.models.model import PtmModel
    from ptmzoo.objectives.unilm import UnifiedLM, UniLMOptions

    objective = UnifiedLM(UniLMOptions(), wordpiece_tokenizer, seed=0)
    ids = np.full((2, 10), 20)
    padding = np.array([[1] * 10, [1] * 6 + [0] * 4])
    batch = {"input_ids": ids, "attention_mask": padding.copy(), "token_type_ids": np.zeros_like(ids),
             "nsp_labels": np.zeros(2, dtype=np.int64)}
    objective.prepare(batch, [(0, 0), (0, 1)])
    assert batch["attention_mask"].shape == (2, 10, 10)
    model = PtmModel("unilm", build_backbone("unilm", {"vocab_size": 30, "hidden_size": 8, "num_layers": 1,
                                                       "num_heads": 2, "intermediate_size": 16}))
    assert model.count_tokens({k: torch.from_numpy(v) for k, v in batch.items()}) == 16


MASK, SEP, CLS = 3, 2, 1


def test_cached_decoding_matches_the_full_seq2seq_mask():
    model = tiny_model().eval()
    cached, full = unilm_cached_and_full_logits(model, [CLS, 11, 12, 13, SEP], [21, 22, 23], MASK)
    assert len(cached) == len(full) == 4
    for step, (with_cache, without) in enumerate(zip(cached, full)):
        torch.testing.assert_close(with_cache, without, atol=1e-5, rtol=1e-5, msg=f"step {step}")


def test_generate_left_pads_and_beam_search_runs():
    model = tiny_model()
    sources = [[CLS, 11, 12, SEP], [CLS, 11, 12, 13, 14, SEP]]
    greedy = generate_unilm(model, sources, mask_token_id=MASK, eos_token_id=SEP, max_new_tokens=4)
    alone = generate_unilm(model, sources[:1], mask_token_id=MASK, eos_token_id=SEP, max_new_tokens=4)
    assert greedy.token_ids[0] == alone.token_ids[0]  # left padding changes nothing
    beams = generate_unilm(model, sources, mask_token_id=MASK, eos_token_id=SEP, max_new_tokens=4, num_beams=3)
    assert len(beams.token_ids) == 2 and all(beams.token_ids)


def test_seq2seq_finetuning_batch_masks_target_only():
    batch = seq2seq_batch([[CLS, 5, SEP]], [[7, 8, SEP]], MASK, 0, np.random.default_rng(0), mask_prob=1.0)
    assert batch["input_ids"].tolist() == [[CLS, 5, SEP, MASK, MASK, MASK]]
    assert batch["mlm_labels"].tolist() == [[-100, -100, -100, 7, 8, SEP]]
    assert not batch["attention_mask"][0, :3, 3:].any()  # the source never sees the target


@pytest.mark.parametrize("name", ["unilm-tiny", "unilm-base"])
def test_presets_registered(name):
    from ptmzoo.presets import get_preset

    assert set(get_preset(name).objectives) == {"unilm", "nsp"}
