import json
import os

import pytest
import torch

import ptmzoo
import ptmzoo.objectives
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.data.tokenizers import train_tokenizer
from ptmzoo.errors import UserError
from ptmzoo.models.model import PtmModel


def _bert(tokenizer):
    torch.manual_seed(0)
    model = PtmModel("bert", build_backbone("bert", {"vocab_size": tokenizer.vocab_size, "hidden_size": 32,
                                                     "num_layers": 2, "num_heads": 2, "intermediate_size": 64}))
    model.add_head("mlm", HEADS["mlm"])
    model.add_head("nsp", HEADS["nsp"])
    return model.eval()


@pytest.fixture
def saved(tmp_path, wordpiece_tokenizer):
    model = _bert(wordpiece_tokenizer)
    path = str(tmp_path / "ckpt")
    save_pretrained(path, model, wordpiece_tokenizer)
    return path, model


def test_load_returns_model_and_tokenizer_with_the_documented_api(saved, wordpiece_tokenizer):
    path, original = saved
    loaded = ptmzoo.load(path)
    ids = loaded.tokenizer.encode("the history of philosophy", "is long")
    assert ids == wordpiece_tokenizer.encode("the history of philosophy", "is long")
    input_ids = torch.tensor([ids])
    out = loaded.model(input_ids)
    assert out.last_hidden_state.shape == (1, len(ids), 32)
    assert out.logits.shape == (1, len(ids), wordpiece_tokenizer.vocab_size)  # the MLM head
    assert out.head_logits["nsp"].shape == (1, 2)
    torch.testing.assert_close(out.logits, original(input_ids).logits)
    assert loaded.model.heads["mlm"].decoder.weight is loaded.model.backbone.input_embeddings.weight
    assert loaded.tokenizer.decode(ids) == "the history of philosophy is long"
    token_types = torch.tensor([[0] * 6 + [1] * (len(ids) - 6)])
    assert loaded.model(input_ids, torch.ones_like(input_ids), token_types).logits.shape[1] == len(ids)


def test_overwriting_a_checkpoint_is_atomic(saved, wordpiece_tokenizer, monkeypatch):
    path, model = saved
    before = open(os.path.join(path, "model.safetensors"), "rb").read()
    from ptmzoo import checkpoint

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_model", failing)
    with pytest.raises(OSError):
        save_pretrained(path, model, wordpiece_tokenizer)
    assert open(os.path.join(path, "model.safetensors"), "rb").read() == before
    assert sorted(os.listdir(os.path.dirname(path))) == ["ckpt"]


def test_bad_checkpoints_give_clear_errors(saved, tmp_path, english_docs):
    path, _ = saved
    with pytest.raises(UserError, match="not found"):
        ptmzoo.load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a ptmzoo checkpoint"):
        ptmzoo.load(str(tmp_path / "empty"))
    meta_path = os.path.join(path, "ptmzoo.json")
    meta = json.load(open(meta_path))

    meta_wrong = dict(meta, config={**meta["config"], "hidden_size": 64, "num_heads": 2})
    json.dump(meta_wrong, open(meta_path, "w"))
    with pytest.raises(UserError, match="do not fit the config"):
        ptmzoo.load(path)

    open(meta_path, "w").write("{broken")
    with pytest.raises(UserError, match="corrupt"):
        ptmzoo.load(path)

    json.dump(meta, open(meta_path, "w"))
    weights = os.path.join(path, "model.safetensors")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt"):
        ptmzoo.load(path)
    open(weights, "wb").write(data)

    bigger = train_tokenizer(iter(english_docs), "wordpiece", 5000)
    bigger.save(path)
    with pytest.raises(UserError, match="tokenizer vocabulary .* is larger than the model's"):
        ptmzoo.load(path)
