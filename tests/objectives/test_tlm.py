"""XLM on real en-zh parallel text (News Commentary): pair shards, TLM samples (language ids per
half, positions restarting at the target, masking only on content tokens), MLM with a language
id on a monolingual stream, and a few training steps that lower the loss."""

import os

import numpy as np
import pytest
import torch

from ptmzoo.catalog import HEADS, build_backbone, build_model
from ptmzoo.data.parallel import ParallelPairs, prepare_parallel
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.errors import UserError
from ptmzoo.objectives import PretrainCollator, build_objectives
from ptmzoo.train.pretrain import build_pretrain_dataset
from tests.conftest import run_cli, shared_path

PAIRS = 400


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    """(shard directory of en-zh pairs, tokenizer, the pairs), with a wordpiece vocabulary shared
    by both languages."""
    from ptmzoo.data.tokenizers import train_tokenizer

    path = shared_path("parallel", "news_commentary_en_zh_sampled.txt")
    with open(path, encoding="utf-8") as fh:
        pairs = [line.rstrip("\n").split("\t") for line in fh][:PAIRS]
    tmp = tmp_path_factory.mktemp("tlm")
    tsv = tmp / "pairs.tsv"
    tsv.write_text("".join(f"{en}\t{zh}\n" for en, zh in pairs), encoding="utf-8")
    tokenizer = train_tokenizer(iter([text for pair in pairs for text in pair]), "wordpiece", 3000)
    tokenizer.save(str(tmp / "tok"))
    prepare_parallel([str(tsv)], str(tmp / "tok"), str(tmp / "shards"), ("en", "zh"), valid_fraction=0.05)
    return str(tmp / "shards"), tokenizer, pairs


def _xlm(tokenizer, layers=2):
    config = {"vocab_size": tokenizer.vocab_size, "hidden_size": 64, "num_layers": layers, "num_heads": 2,
              "intermediate_size": 128, "max_position_embeddings": 128, "languages": ["de", "en", "zh"],
              "pad_token_id": tokenizer.pad_id, "hidden_dropout": 0.0, "attention_dropout": 0.0}
    return build_model("xlm", backbone=build_backbone("xlm", config))


def test_pair_shards_keep_the_shard_format(parallel):
    shards, tokenizer, pairs = parallel
    corpus = ShardedCorpus(shards)
    assert corpus.meta["parallel"] == {"languages": ["en", "zh"]}
    split = corpus.split("train")
    en, zh = pairs[0]
    first = split.doc(0).astype(np.int64)
    cut = int(split.sentence_starts(0)[1])
    assert tokenizer.decode(first[:cut].tolist()).replace(" ", "") == tokenizer.decode(
        tokenizer.encode(en, add_special_tokens=False)).replace(" ", "")
    assert first[cut:].tolist() == tokenizer.encode(zh, add_special_tokens=False)
    assert split.num_docs + corpus.split("valid").num_docs == PAIRS


def test_tlm_samples_languages_positions_and_masking(parallel):
    shards, tokenizer, _ = parallel
    corpus = ShardedCorpus(shards)
    model = _xlm(tokenizer)
    ids = model.backbone.corpus_segment_ids(corpus.meta)
    assert ids == (1, 2)  # en, zh in the model's list
    objectives = build_objectives({"tlm": {}}, tokenizer, seed=0)
    data = build_pretrain_dataset(corpus.split("train"), objectives, tokenizer, 64, True, 0, 8, segment_ids=ids)
    assert isinstance(data, ParallelPairs)
    samples = [data[(i, 0)] for i in range(64)]
    for sample in samples:
        seps = np.flatnonzero(sample["input_ids"] == tokenizer.sep_id)
        target = seps[0] + 1
        assert sample["input_ids"][0] == tokenizer.cls_id and len(seps) == 2 and seps[1] == len(sample["input_ids"]) - 1
        assert (sample["token_type_ids"][:target] == 1).all() and (sample["token_type_ids"][target:] == 2).all()
        assert sample["position_ids"][target] == 0 and sample["position_ids"][target - 1] == target - 1
        assert (np.diff(sample["position_ids"][target:]) == 1).all()
    originals = [s["input_ids"].copy() for s in samples]
    batch = PretrainCollator(objectives, tokenizer.pad_id)(samples)
    labels = batch["mlm_labels"].numpy()
    chosen = labels != -100
    specials = np.isin(np.stack([np.pad(o, (0, labels.shape[1] - len(o)), constant_values=tokenizer.pad_id)
                                 for o in originals]), tokenizer.special_ids)
    assert not (chosen & specials).any()  # never [CLS], [SEP] or padding
    content = (~specials).sum()
    assert abs(chosen.sum() / content - 0.15) < 0.03
    types = batch["token_type_ids"].numpy()
    assert chosen[types == 1].any() and chosen[types == 2].any()  # both languages masked
    masked = batch["input_ids"].numpy()[chosen] == tokenizer.mask_id
    assert 0.7 < masked.mean() < 0.9


def test_tlm_lowers_the_loss_and_mlm_carries_the_stream_language(parallel):
    shards, tokenizer, _ = parallel
    corpus = ShardedCorpus(shards)
    torch.manual_seed(0)
    model = _xlm(tokenizer, layers=1)
    objectives = build_objectives({"tlm": {}}, tokenizer, seed=0)
    model.add_head("tlm", HEADS["mlm"])
    data = build_pretrain_dataset(corpus.split("train"), objectives, tokenizer, 64, True, 0, 8,
                                  segment_ids=model.backbone.corpus_segment_ids(corpus.meta))
    collate = PretrainCollator(objectives, tokenizer.pad_id)
    fixed = collate([data[(i, 0)] for i in range(16)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss(batch):
        targets = {"mlm_labels": batch["mlm_labels"]}
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["position_ids"],
                     targets=targets).loss

    model.train()
    before = loss(fixed).item()
    for step in range(30):
        batch = collate([data[(i, step)] for i in range(16 * (step % 20), 16 * (step % 20) + 16)])
        optimizer.zero_grad()
        loss(batch).backward()
        optimizer.step()
    assert loss(fixed).item() < before - 1.0
    mono = build_pretrain_dataset(corpus.split("train"), build_objectives({"mlm": {}}, tokenizer, 0), tokenizer, 32,
                                  True, 0, 8, segment_ids=model.backbone.corpus_segment_ids({"language": "zh"}))
    assert (mono[(0, 0)]["token_type_ids"] == 2).all()
    with pytest.raises(UserError, match="'fr' is not one of the model's languages"):
        model.backbone.corpus_segment_ids({"language": "fr"})


def test_prepare_parallel_cli_two_files_and_errors(tmp_path, parallel):
    shards, _, pairs = parallel
    src, tgt = tmp_path / "a.en", tmp_path / "a.zh"
    src.write_text("".join(en + "\n" for en, _ in pairs[:50]), encoding="utf-8")
    tgt.write_text("".join(zh + "\n" for _, zh in pairs[:50]), encoding="utf-8")
    tok = os.path.join(shards, "..", "tok")
    out = run_cli("prepare", "--parallel", "--languages", "en,zh", "--input", str(src), str(tgt), "--tokenizer",
                  tok, "--out", str(tmp_path / "s"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert ShardedCorpus(str(tmp_path / "s")).split("train").num_docs == 50
    tgt.write_text("".join(zh + "\n" for _, zh in pairs[:49]), encoding="utf-8")
    out = run_cli("prepare", "--parallel", "--languages", "en,zh", "--input", str(src), str(tgt), "--tokenizer",
                  tok, "--out", str(tmp_path / "t"), timeout=120)
    assert out.returncode == 2 and "different numbers of lines" in out.stderr
