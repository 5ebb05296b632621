"""Whole-word, knowledge (ERNIE) and span (SpanBERT) masking on real text: rates, whole-word and
whole-entity integrity, specials never masked, labels only where corrupted, span lengths."""

import numpy as np
import pytest
import torch

from ptmzoo.data.packing import PackedBlocks, SentencePairs
from ptmzoo.data.prepare import Segmenter, token_marks
from ptmzoo.data.shards import ENTITY, ENTITY_START, WORD_START, ShardedCorpus
from ptmzoo.errors import UserError
from ptmzoo.objectives import build_objectives
from ptmzoo.objectives.masking import span_length_distribution, span_units
from tests.objectives.objective_helpers import masked_batch, people_daily_corpus, special_or_pad, word_ids


@pytest.fixture(scope="session")
def people_daily(tmp_path_factory):
    return people_daily_corpus(tmp_path_factory)


def check_basic_invariants(original, batch, tokenizer, rate_tolerance=0.01):
    """Specials and padding never chosen, labels = originals exactly where chosen, nothing else
    changed, and about 15% of the maskable tokens chosen; returns (chosen, maskable)."""
    chosen = batch["mlm_labels"] != -100
    special = special_or_pad(original, tokenizer)
    assert not (chosen & special).any()
    assert torch.equal(batch["mlm_labels"][chosen], original["input_ids"][chosen])
    assert torch.equal(batch["input_ids"][~chosen], original["input_ids"][~chosen])
    maskable = ~special
    budget = torch.clamp(torch.round(maskable.sum(1) * 0.15), min=1)
    assert (chosen.sum(1) <= budget).all()  # whole units never overshoot the budget
    rate = chosen.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < rate_tolerance, rate
    return chosen, maskable


def partial_units(chosen, unit_start, members) -> tuple[np.ndarray, np.ndarray]:
    """Per row, (units partly chosen, units wholly chosen) among the positions in ``members``;
    a unit begins where ``unit_start`` is set."""
    rows, length = chosen.shape
    key = (torch.arange(rows)[:, None] * (length + 1) + word_ids(unit_start))[members].numpy()
    size = rows * (length + 1)
    total = np.bincount(key, minlength=size)
    taken = np.bincount(key, weights=chosen[members].numpy().astype(float), minlength=size)
    partial, whole = (taken > 0) & (taken < total), (total > 0) & (taken == total)
    return partial.reshape(rows, -1).sum(1), whole.reshape(rows, -1).sum(1)


def marks(batch, bit):
    return (batch["token_marks"] & bit) != 0


# -- segmentation and shards ------------------------------------------------------------------------
def test_tagged_text_gives_words_entities_and_token_marks(char_tokenizer):
    line = "[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  江/nr  泽民/nr  在/p  北京/ns  。/w"
    plain, words, entities = Segmenter("tagged")(line)
    assert plain == "中央 人民 广播 电台 记者 江 泽民 在 北京 。"
    assert [plain[a:b] for a, b in words][:3] == ["中央", "人民", "广播"]
    assert [plain[a:b] for a, b in entities] == ["中央 人民 广播 电台", "江 泽民", "北京"]  # person names merged
    (ids, offsets), = char_tokenizer.encode_with_offsets([plain])
    got = token_marks(np.asarray(offsets), words, entities)
    W, E, S = WORD_START, ENTITY, ENTITY_START
    expected = [W | E | S, E, W | E, E, W | E, E, W | E, E, W, 0, W | E | S, W | E, E, W, W | E | S, E, W]
    assert got.tolist() == expected and len(ids) == len(expected)


def test_marks_are_stored_with_the_shards_and_old_shards_still_read(people_daily, wiki_shards, wordpiece_tokenizer):
    shards, tok = people_daily
    split = ShardedCorpus(shards).split("train")
    doc = split.doc(1)  # 中共中央/nt 总书记/n 、/w 国家/n 主席/n 江/nr 泽民/nr
    assert tok.decode(doc).replace(" ", "") == "中共中央总书记、国家主席江泽民"
    assert split.doc_marks(1).tolist() == [7, 2, 2, 2, 1, 0, 0, 1, 1, 0, 1, 0, 7, 3, 2]
    sample = PackedBlocks(split, 62, tok.sep_id, (tok.cls_id,), (tok.sep_id,))[(3, 0)]
    assert sample["token_marks"].shape == sample["input_ids"].shape
    pair = SentencePairs(split, 64, tok.cls_id, tok.sep_id)[(5, 0)]
    assert pair["token_marks"].shape == pair["input_ids"].shape
    assert pair["token_marks"][pair["input_ids"] == tok.sep_id].tolist() == [WORD_START, WORD_START]
    old = ShardedCorpus(wiki_shards)  # written without marks (as before this format addition)
    assert "token_marks" not in old.meta and old.split("train").marks is None
    assert "token_marks" not in PackedBlocks(old.split("train"), 62, 3, (2,), (3,))[(0, 0)]


# -- whole-word masking ---------------------------------------------------------------------------
def test_whole_word_masking_on_segmented_chinese(people_daily):
    shards, tok = people_daily
    original, batch = masked_batch(shards, tok, {"mlm": {"masking": "whole_word"}})
    chosen, maskable = check_basic_invariants(original, batch, tok)
    partial, whole = partial_units(chosen, marks(original, WORD_START), maskable)
    assert partial.sum() == 0 and whole.sum() > 1000
    # multi-character words are masked whole, and 80/10/10 is decided per token (Google's WWM)
    ids, orig = batch["input_ids"], original["input_ids"]
    n = int(chosen.sum())
    as_mask = (ids[chosen] == tok.mask_id).float().mean().item()
    unchanged = (ids[chosen] == orig[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 4 * np.sqrt(0.16 / n) and abs(unchanged - 0.1) < 4 * np.sqrt(0.09 / n) + 1e-3
    mixed = chosen & (ids != tok.mask_id) & torch.roll(chosen & (ids == tok.mask_id), 1, dims=1)
    assert (mixed & ~marks(original, WORD_START)).any()  # a word with [MASK] and a kept/random token


def test_whole_word_masking_follows_wordpieces(wiki_shards, wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    original, batch = masked_batch(wiki_shards, tok, {"mlm": {"masking": "whole_word"}}, limit=300)
    chosen, maskable = check_basic_invariants(original, batch, tok)
    vocab = {i: t for t, i in tok.backend.get_vocab().items()}
    starts = torch.tensor([[not vocab[int(i)].startswith("##") for i in row] for row in original["input_ids"]])
    assert partial_units(chosen, starts, maskable)[0].sum() == 0
    continued = chosen & ~starts  # words of several pieces were chosen, all their pieces with them
    assert continued.sum() > 100


def test_character_tokenizer_without_segmentation_is_refused(tmp_path, char_tokenizer):
    from tests.conftest import make_shards, shared_path

    shards = make_shards(str(tmp_path), char_tokenizer, shared_path("zh", "corpus", "clue_small_sampled.txt"))
    for masking in ("whole_word", "knowledge", "span"):
        (mlm,) = build_objectives({"mlm": {"masking": masking}}, char_tokenizer, 0)
        with pytest.raises(UserError, match="--segmentation"):
            mlm.check_corpus(ShardedCorpus(shards))
    with pytest.raises(UserError, match="masking must be one of"):
        build_objectives({"mlm": {"masking": "words"}}, char_tokenizer, 0)


# -- ERNIE knowledge masking ------------------------------------------------------------------------
def test_entity_level_masking_masks_whole_entities(people_daily):
    shards, tok = people_daily
    original, batch = masked_batch(shards, tok, {"mlm": {"masking": "knowledge", "phrase_prob": 0, "entity_prob": 1}})
    chosen, maskable = check_basic_invariants(original, batch, tok)
    in_entity = marks(original, ENTITY) & maskable
    partial_entities, whole_entities = partial_units(chosen, marks(original, ENTITY_START), in_entity)
    assert partial_entities.sum() == 0 and whole_entities.sum() > 300
    assert partial_units(chosen, marks(original, WORD_START), maskable)[0].sum() == 0  # the rest: whole words
    entity_rate = (chosen & in_entity).sum().item() / in_entity.sum().item()
    assert entity_rate > 0.4  # entities first (vs 15% for any token)


def test_knowledge_masking_mixes_basic_phrase_and_entity_levels(people_daily, wiki_shards, wordpiece_tokenizer):
    shards, tok = people_daily
    original, batch = masked_batch(shards, tok, {"mlm": {"masking": "knowledge"}})  # 40/30/30
    chosen, maskable = check_basic_invariants(original, batch, tok)
    split_words = partial_units(chosen, marks(original, WORD_START), maskable)[0]
    basic_share = np.mean(split_words > 0)  # rows with split words were masked per token (basic level)
    assert 0.25 < basic_share < 0.45
    (ernie,) = build_objectives({"mlm": {"masking": "knowledge"}}, wordpiece_tokenizer, 0)
    with pytest.raises(UserError, match="entity boundaries"):
        ernie.check_corpus(ShardedCorpus(wiki_shards))


# -- SpanBERT span masking ------------------------------------------------------------------------
def spans_of(batch):
    """Distinct (row, left, right) boundaries of the masked spans."""
    left, right = batch["span_left"], batch["span_right"]
    rows, cols = (left >= 0).nonzero(as_tuple=True)
    return sorted({(int(r), int(left[r, c]), int(right[r, c])) for r, c in zip(rows, cols)})


def test_span_lengths_follow_the_truncated_geometric():
    probs = span_length_distribution(0.2, 10)
    mean = float((np.arange(1, 11) * probs).sum())
    assert mean == pytest.approx(3.80, abs=0.005)  # SpanBERT's "mean span length 3.8"
    assert probs[0] == pytest.approx(0.2 / (1 - 0.8 ** 10))
    # drawn spans, where neither the budget nor other spans cut them (2% of a long text)
    words = [np.asarray([i]) for i in range(400_000)]
    spans = span_units(words, 8000, np.random.default_rng(0))
    lengths = np.asarray([len(span) for span in spans])
    share = np.bincount(lengths, minlength=11)[1:] / len(lengths)
    assert lengths.max() <= 10 and abs(lengths.mean() - mean) < 0.15
    assert np.abs(share - probs).max() < 0.025


@pytest.mark.parametrize("corpus", ["people_daily", "wiki"])
def test_span_masking_statistics(corpus, people_daily, wiki_shards, wordpiece_tokenizer):
    if corpus == "people_daily":
        shards, tok = people_daily
        original, batch = masked_batch(shards, tok, {"mlm": {"masking": "span"}})
        starts = marks(original, WORD_START)
    else:
        tok = wordpiece_tokenizer
        original, batch = masked_batch(wiki_shards, tok, {"mlm": {"masking": "span"}}, limit=300)
        vocab = {i: t for t, i in tok.backend.get_vocab().items()}
        starts = torch.tensor([[not vocab[int(i)].startswith("##") for i in row] for row in original["input_ids"]])
    chosen, maskable = check_basic_invariants(original, batch, tok, rate_tolerance=0.015)
    assert partial_units(chosen, starts, maskable)[0].sum() == 0  # spans are made of whole words
    lengths = []
    ids = batch["input_ids"]
    for row, left, right in spans_of(batch):
        inside = slice(left + 1, right)
        assert chosen[row, inside].all()  # boundaries enclose exactly the span
        assert starts[row, left + 1] or not maskable[row, left]
        assert right == ids.shape[1] - 1 or starts[row, right] or not maskable[row, right]
        replaced = ids[row, inside] == tok.mask_id
        assert replaced.all() or not replaced.any()  # 80/10/10 decided per span
        lengths.append(int(starts[row, inside].sum() + (0 if starts[row, left + 1] else 1)))
    lengths = np.asarray(lengths)
    theory = span_length_distribution(0.2, 10)
    share = np.bincount(lengths, minlength=11)[1:] / len(lengths)
    print(f"{corpus}: {len(lengths)} spans, mean {lengths.mean():.2f} words (theory 3.80), "
          f"P(1..4) {np.round(share[:4], 3)} vs {np.round(theory[:4], 3)}")
    assert lengths.max() <= 10 and len(lengths) > 500
    # The 15% budget of a 128-token sequence (19 tokens) cuts the last span short and fills what
    # is left with short spans, so realised spans are shorter than drawn ones (as in SpanBERT's
    # own sampler), more so for Chinese words of ~1.7 characters than for English words.
    assert 3.80 * 0.6 < lengths.mean() < 3.80
    assert np.all(np.diff(share) < 0.01)  # decreasing, like the geometric
