import numpy as np
import pytest
import torch

from ptmzoo.catalog import HEADS
from ptmzoo.data.packing import PackedBlocks
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.objectives import PretrainCollator, build_objectives


def _masked_batches(shards, tokenizer, epoch=0, **options):
    split = ShardedCorpus(shards).split("train")
    blocks = PackedBlocks(split, 126, tokenizer.sep_id, (tokenizer.cls_id,), (tokenizer.sep_id,))
    objectives = build_objectives({"mlm": options}, tokenizer, seed=7)
    collate = PretrainCollator(objectives, tokenizer.pad_id)
    samples = [blocks[(i, epoch)] for i in range(len(blocks))]
    # one short sample so that padding is present
    samples[0] = {**samples[0], "input_ids": samples[0]["input_ids"][:40]}
    original = collate.__class__([], tokenizer.pad_id)(samples)["input_ids"]
    return original, collate(samples)


def test_masking_statistics_on_real_text(wiki_shards, wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    original, batch = _masked_batches(wiki_shards, tok)
    ids, labels, attention = batch["input_ids"], batch["mlm_labels"], batch["attention_mask"]
    special = torch.isin(original, torch.tensor(tok.special_ids)) | (attention == 0)
    chosen = labels != -100
    # specials and padding are never chosen; labels are the original tokens exactly where chosen
    assert not (chosen & special).any()
    assert torch.equal(labels[chosen], original[chosen])
    assert torch.equal(ids[~chosen], original[~chosen])
    # exactly round(15%) of the maskable tokens per sequence
    maskable = (~special).sum(1)
    assert torch.equal(chosen.sum(1), torch.clamp(torch.round(maskable * 0.15), min=1).long())
    # 80 / 10 / 10 among the chosen tokens
    n = int(chosen.sum())
    as_mask = (ids[chosen] == tok.mask_id).float().mean().item()
    unchanged = (ids[chosen] == original[chosen]).float().mean().item()
    replaced = 1 - as_mask - unchanged
    tolerance = 4 * np.sqrt(0.1 * 0.9 / n)
    assert n > 5000
    assert abs(as_mask - 0.8) < 4 * np.sqrt(0.8 * 0.2 / n)
    assert abs(replaced - 0.1) < tolerance + 1e-3  # a random token can equal the original (rare)
    assert abs(unchanged - 0.1) < tolerance + 1e-3
    # random replacements are never special tokens
    random_positions = chosen & (ids != tok.mask_id) & (ids != original)
    assert not torch.isin(ids[random_positions], torch.tensor(tok.special_ids)).any()


def test_dynamic_masks_change_each_epoch_static_do_not(wiki_shards, wordpiece_tokenizer):
    _, epoch0 = _masked_batches(wiki_shards, wordpiece_tokenizer, epoch=0)
    _, epoch0_again = _masked_batches(wiki_shards, wordpiece_tokenizer, epoch=0)
    _, epoch1 = _masked_batches(wiki_shards, wordpiece_tokenizer, epoch=1)
    assert torch.equal(epoch0["mlm_labels"], epoch0_again["mlm_labels"])  # reproducible
    assert not torch.equal(epoch0["mlm_labels"] != -100, epoch1["mlm_labels"] != -100)
    _, static0 = _masked_batches(wiki_shards, wordpiece_tokenizer, epoch=0, dynamic=False)
    _, static1 = _masked_batches(wiki_shards, wordpiece_tokenizer, epoch=1, dynamic=False)
    assert torch.equal(static0["input_ids"], static1["input_ids"])


def test_mlm_loss_is_cross_entropy_at_masked_positions_only(wiki_shards, wordpiece_tokenizer):
    from ptmzoo.catalog import build_backbone
    from ptmzoo.models.model import PtmModel

    _, batch = _masked_batches(wiki_shards, wordpiece_tokenizer)
    batch = {k: v[:4] for k, v in batch.items()}
    model = PtmModel("bert", build_backbone("bert", {"vocab_size": wordpiece_tokenizer.vocab_size, "hidden_size": 32,
                                                     "num_layers": 1, "num_heads": 2, "intermediate_size": 64}))
    model.add_head("mlm", HEADS["mlm"])
    model.eval()
    out = model(batch["input_ids"], batch["attention_mask"], targets=batch)
    logits = model(batch["input_ids"], batch["attention_mask"]).logits
    labels = batch["mlm_labels"]
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss_sums["mlm"].item() == pytest.approx(expected.item() * int((labels != -100).sum()), rel=1e-5)
