"""StructBERT on real text: the word structural objective (shuffled trigrams put back in order,
through the MLM head's layers) and the 3-way sentence structural objective (next / previous /
other-document segment)."""

import numpy as np
import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.data.packing import SentencePairs
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.errors import UserError
from ptmzoo.models.model import PtmModel
from ptmzoo.objectives import PretrainCollator, build_objectives
from ptmzoo.presets import get_preset
from ptmzoo.train.pretrain import build_pretrain_dataset
from tests.objectives.objective_helpers import masked_batch, special_or_pad

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}


def trigrams(shuffled: torch.Tensor) -> list[tuple[int, int]]:
    """(row, start) of every shuffled trigram: runs of shuffled positions cut into threes (the
    trigrams never overlap, so a run is trigrams side by side)."""
    found = []
    for row in range(shuffled.shape[0]):
        positions = shuffled[row].nonzero().flatten().tolist()
        run_start = None
        for i, pos in enumerate(positions):
            if run_start is None or pos != positions[i - 1] + 1:
                run_start = pos
            if (pos - run_start) % 3 == 0:
                found.append((row, pos))
    return found


@pytest.fixture(scope="module")
def structbert_batch(wiki_shards, wordpiece_tokenizer):
    return masked_batch(wiki_shards, wordpiece_tokenizer, {"mlm": {}, "word_order": {}}, limit=400)


def test_shuffled_trigrams_on_real_text(structbert_batch, wordpiece_tokenizer):
    original, batch = structbert_batch
    tok = wordpiece_tokenizer
    shuffled = batch["word_order_labels"] != -100
    masked = batch["mlm_labels"] != -100
    special = special_or_pad(original, tok)
    assert not (shuffled & masked).any() and not (shuffled & special).any()
    # labels: the original token exactly at the shuffled positions; nothing else moved
    assert torch.equal(batch["word_order_labels"][shuffled], original["input_ids"][shuffled])
    untouched = ~shuffled & ~masked
    assert torch.equal(batch["input_ids"][untouched], original["input_ids"][untouched])
    found = trigrams(shuffled)
    assert len(found) * 3 == int(shuffled.sum())
    for row, start in found:
        before, after = original["input_ids"][row, start : start + 3], batch["input_ids"][row, start : start + 3]
        assert sorted(before.tolist()) == sorted(after.tolist())  # a permutation of the trigram
        assert len(set(before.tolist())) > 1 and not torch.equal(before, after)  # and never as it was
    # 5% of the trigrams: one per 20 content tokens
    content = (~special).sum().item()
    assert len(found) > 500 and abs(len(found) / content - 0.05) < 0.004, len(found) / content
    # the MLM side is untouched by the shuffling: still 15% of the content tokens
    assert abs(masked.sum().item() / content - 0.15) < 0.01


def test_shuffles_are_redrawn_each_epoch_and_reproducible(wiki_shards, wordpiece_tokenizer):
    spec = {"mlm": {}, "word_order": {}}
    _, first = masked_batch(wiki_shards, wordpiece_tokenizer, spec, limit=40)
    _, again = masked_batch(wiki_shards, wordpiece_tokenizer, spec, limit=40)
    _, later = masked_batch(wiki_shards, wordpiece_tokenizer, spec, epoch=1, limit=40)
    assert torch.equal(first["input_ids"], again["input_ids"])
    assert not torch.equal(first["word_order_labels"], later["word_order_labels"])


def test_word_order_options_and_order(wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    for spec in ({"word_order": {}}, {"word_order": {}, "mlm": {}}):
        with pytest.raises(UserError, match="mlm first"):
            build_objectives(spec, tok, 0)
    for options in ({"shuffle_prob": 0}, {"ngram": 1}):
        with pytest.raises(UserError, match="objectives.word_order"):
            build_objectives({"mlm": {}, "word_order": options}, tok, 0)


def test_longer_ngrams_are_shuffled_whole(wiki_shards, wordpiece_tokenizer):
    spec = {"mlm": {}, "word_order": {"ngram": 4, "shuffle_prob": 0.03}}
    original, batch = masked_batch(wiki_shards, wordpiece_tokenizer, spec, limit=100)
    shuffled = batch["word_order_labels"] != -100
    content = (~special_or_pad(original, wordpiece_tokenizer)).sum().item()
    assert int(shuffled.sum()) % 4 == 0 and abs(shuffled.sum().item() / 4 / content - 0.03) < 0.006


def test_word_order_head_reads_through_the_mlm_layers(tmp_path):
    torch.manual_seed(0)
    vocab = 60
    model = PtmModel("bert", build_backbone("bert", {"vocab_size": vocab, **TINY}))
    mlm = model.add_head("mlm", HEADS["mlm"])
    head = model.add_head("word_order", HEADS["word_order"])
    assert head.dense is mlm.dense and head.norm is mlm.norm and head.decoder is mlm.decoder
    alone = PtmModel("bert", build_backbone("bert", {"vocab_size": vocab, **TINY}))
    alone.add_head("mlm", HEADS["mlm"])
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in alone.parameters())
    model.eval()
    ids = torch.tensor([[2, 10, 13, 12, 11, 14, 4, 3]])  # [CLS] x1 (x4 x3 x2) x5 [MASK] [SEP]
    labels = torch.full_like(ids, -100)
    labels[0, 2:5] = torch.tensor([11, 12, 13])
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[0, 6] = 20
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "word_order_labels": labels,
             "mlm_labels": mlm_labels}
    out = model(ids, batch["attention_mask"], targets=batch)
    logits = model(ids).head_logits["mlm"][0]
    expected = torch.nn.functional.cross_entropy(logits[2:5], labels[0, 2:5], reduction="sum")
    assert out.loss_sums["word_order"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.loss_sums["mlm"].item() + out.loss_sums["word_order"].item() / 3,
                                            rel=1e-5)
    assert "word_order" not in model(ids).head_logits  # at inference its logits would be MLM's
    # a saved model keeps the sharing
    save_pretrained(str(tmp_path / "m"), model, None)
    loaded = ptmzoo.load(str(tmp_path / "m")).model
    assert loaded.heads["word_order"].dense is loaded.heads["mlm"].dense
    assert loaded(ids, batch["attention_mask"], targets=batch).loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


# -- sentence structural objective -------------------------------------------------------------------
def test_three_way_sentence_pairs_on_real_text(wiki_shards, wordpiece_tokenizer):
    split = ShardedCorpus(wiki_shards).split("train")
    tok = wordpiece_tokenizer
    pairs = SentencePairs(split, seq_len=64, cls_id=tok.cls_id, sep_id=tok.sep_id, seed=3, task="sop", classes=3)
    labels, checked = [], 0
    for i in range(len(pairs)):
        sample = pairs[(i, 0)]
        ids = sample["input_ids"]
        a_end = int(np.flatnonzero(ids == tok.sep_id)[0])
        a, b = ids[1:a_end], ids[a_end + 1 : -1]
        doc, start, end = pairs.chunks[i]
        chunk = split.doc(doc)[start:end]
        label = sample["sop_labels"]
        labels.append(label)
        if label == 1:
            a, b = b, a  # B precedes A: swapped back, the pair reads as the chunk
        if label < 2 and len(a) + len(b) == len(chunk):  # untruncated
            assert np.array_equal(np.concatenate([a, b]), chunk)
        if label == 2 and checked < 300 and len(b) >= 8:  # B comes from another document
            text = split.doc(doc).astype(np.int64)
            windows = np.lib.stride_tricks.sliding_window_view(text, len(b))
            assert not (windows == b).all(axis=1).any()
            checked += 1
    counts = np.bincount(labels, minlength=3) / len(labels)
    assert len(labels) > 1000 and np.all(np.abs(counts - 1 / 3) < 0.04), counts
    assert checked > 100


def test_sop_classes_option(wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    sop = build_objectives({"sop": {"classes": 3}}, tok, 0)[0]
    assert sop.head_options() == {"classes": 3} and sop.sample_options()["classes"] == 3
    assert build_objectives({"sop": {}}, tok, 0)[0].head_options() == {}
    with pytest.raises(UserError, match="classes must be 2"):
        build_objectives({"sop": {"classes": 4}}, tok, 0)
    with pytest.raises(UserError, match="not used with classes: 3"):
        build_objectives({"sop": {"classes": 3, "random_next_prob": 0.3}}, tok, 0)
    with pytest.raises(UserError, match="classes"):  # NSP has no such option
        build_objectives({"nsp": {"classes": 3}}, tok, 0)
    with pytest.raises(ValueError, match="sentence-order"):
        SentencePairs(None, 64, tok.cls_id, tok.sep_id, task="nsp", classes=3)


def test_structbert_preset_batches_and_losses(wiki_shards, wordpiece_tokenizer):
    """The structbert-base objectives on real sentence pairs: three-way labels, shuffles inside
    the segments, one loss per head, and a 3-way classifier."""
    tok = wordpiece_tokenizer
    objectives = build_objectives(get_preset("structbert-base").objectives, tok, seed=5)
    data = build_pretrain_dataset(ShardedCorpus(wiki_shards).split("train"), objectives, tok, 64, True, 5, 8)
    assert isinstance(data, SentencePairs) and data.classes == 3
    samples = [data[(i, 0)] for i in range(64)]
    original = PretrainCollator([], tok.pad_id)(samples)
    batch = PretrainCollator(objectives, tok.pad_id)(samples)
    assert set(batch["sop_labels"].tolist()) == {0, 1, 2}
    shuffled = batch["word_order_labels"] != -100
    assert shuffled.any() and not (shuffled & special_or_pad(original, tok)).any()
    model = PtmModel("bert", build_backbone("bert", {"vocab_size": tok.vocab_size, **TINY}))
    for objective in objectives:
        objective.attach(model)
    assert model.heads["sop"].classifier.out_features == 3
    out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], targets=batch)
    assert set(out.loss_sums) == {"mlm", "word_order", "sop"} and torch.isfinite(out.loss)
