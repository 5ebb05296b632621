"""`finetune --init-embeddings DIR`: the token embedding rows of the words both vocabularies share
get the word vectors; nothing else changes."""

import json
import os

import numpy as np
import pytest
import torch

from ptmzoo.cli import main
from ptmzoo.errors import UserError
from ptmzoo.finetune.run import FinetuneConfig, FinetuneRun
from ptmzoo.init_model import init_checkpoint
from ptmzoo.loading import load
from ptmzoo.vectors.embeddings import init_embeddings, token_words
from ptmzoo.vectors.keyed import WordVectors
from tests.conftest import shared_path

DIM = 128  # bert-tiny's embedding size


@pytest.fixture(scope="module")
def bert(tmp_path_factory, wordpiece_tokenizer):
    root = tmp_path_factory.mktemp("bert")
    wordpiece_tokenizer.save(str(root / "tok"))
    init_checkpoint("bert-tiny", str(root / "tok"), str(root / "model"))
    return str(root / "model")


def _vectors(words, dim=DIM, seed=0):
    return WordVectors(words, np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32))


def test_shared_words_get_their_vectors_and_other_rows_stay(bert, tmp_path):
    pretrained = load(bert)
    tokenizer, backbone = pretrained.tokenizer, pretrained.model.backbone
    vocab = tokenizer.backend.get_vocab()
    assert "the" in vocab and "history" in vocab and "##s" in vocab
    words = ["the", "History", "history", "zzqxw", "s", "[CLS]"]  # "History" normalises to the token "history"
    vectors = _vectors(words)
    vectors.save(str(tmp_path / "vecs"))
    before = backbone.input_embeddings.weight.detach().clone()
    count = init_embeddings(backbone, tokenizer, str(tmp_path / "vecs"))
    after = backbone.input_embeddings.weight.detach()
    expected = {vocab["the"]: 0, vocab["history"]: 1}  # the most frequent spelling (first in the file) wins
    if "s" in vocab:
        expected[vocab["s"]] = 4
    assert count == len(expected)
    for token_id, row in expected.items():
        assert torch.equal(after[token_id], torch.from_numpy(vectors.matrix[row]))
    untouched = [i for i in range(len(after)) if i not in expected]
    assert torch.equal(after[untouched], before[untouched])  # [CLS], ##s and the rest keep their values
    assert vocab["[CLS]"] in untouched and vocab["##s"] in untouched


def test_whole_word_tokens_of_each_tokenizer_kind(bpe_tokenizer, char_tokenizer):
    bpe = token_words(bpe_tokenizer)
    assert bpe[bpe_tokenizer.backend.token_to_id("Ġthe")] == "the"
    chars = token_words(char_tokenizer)
    assert chars[char_tokenizer.backend.token_to_id("中")] == "中"
    assert not set(char_tokenizer.special_ids) & set(chars)


def test_dimension_mismatch_and_no_shared_word_are_clear_errors(bert):
    pretrained = load(bert)
    with pytest.raises(UserError, match="vectors have 16 dimensions but the model's token embeddings have 128"):
        init_embeddings(pretrained.model.backbone, pretrained.tokenizer, _vectors(["the"], dim=16))
    with pytest.raises(UserError, match="none of the 2 words is a token"):
        init_embeddings(pretrained.model.backbone, pretrained.tokenizer, _vectors(["zzqxw", "qqqzz"]))


def test_finetune_flag_initialises_the_task_model(bert, tmp_path, capsys):
    rows = open(shared_path("en", "sst2", "train.tsv"), encoding="utf-8").read().splitlines()
    (tmp_path / "train.tsv").write_text("\n".join(rows[:33]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join([rows[0]] + rows[40:56]) + "\n")
    vocab = load(bert).tokenizer.backend.get_vocab()
    vectors = _vectors(["the", "film", "movie", "notawordpiece"])
    vectors.save(str(tmp_path / "vecs"))
    cfg = FinetuneConfig.from_dict({"model": bert, "train_file": str(tmp_path / "train.tsv"),
                                    "dev_file": str(tmp_path / "dev.tsv"), "options": {"text_column": "sentence"},
                                    "init_embeddings": str(tmp_path / "vecs")})
    run = FinetuneRun(cfg)
    weight = run.model.backbone.input_embeddings.weight.detach()
    shared = [w for w in ("the", "film", "movie") if w in vocab]
    assert run.embeddings_initialised == len(shared) >= 1
    for word in shared:
        assert torch.equal(weight[vocab[word]], torch.from_numpy(vectors.matrix[vectors.index[word]]))
    out = str(tmp_path / "ft")
    code = main(["finetune", "--model", bert, "--train", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"),
                 "--text-column", "sentence", "--out", out, "--epochs", "1", "--batch-size", "16", "--no-progress",
                 "--init-embeddings", str(tmp_path / "vecs")])
    assert code == 0
    assert f"token embeddings: {len(shared)} rows from" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "metrics.json")))["embeddings_initialised"] == len(shared)
