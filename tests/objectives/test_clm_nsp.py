import pytest
import torch

import ptmzoo.objectives  # noqa: F401
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.models.model import PtmModel
from ptmzoo.objectives import PretrainCollator, build_objectives

TINY_GPT = {"vocab_size": 100, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 64}


def test_clm_labels_and_loss_match_a_direct_computation(bpe_tokenizer):
    objectives = build_objectives(["clm"], bpe_tokenizer, 0)
    collate = PretrainCollator(objectives, pad_id=0)
    import numpy as np

    samples = [{"input_ids": np.arange(3, 13), "index": 0, "epoch": 0},
               {"input_ids": np.arange(20, 26), "index": 1, "epoch": 0}]
    batch = collate(samples)
    assert batch["lm_labels"][1, 6:].eq(-100).all() and torch.equal(batch["lm_labels"][0], torch.arange(3, 13))
    torch.manual_seed(0)
    model = PtmModel("gpt2", build_backbone("gpt2", TINY_GPT))
    model.add_head("clm", HEADS["clm"])
    model.eval()
    out = model(batch["input_ids"], batch["attention_mask"], targets=batch)
    logits = model(batch["input_ids"], batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["lm_labels"][:, 1:].flatten(),
                                                 ignore_index=-100)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.count_targets(batch)["clm"].item() == 9 + 5


def test_lm_head_is_tied_to_the_input_embeddings():
    model = PtmModel("gpt2", build_backbone("gpt2", TINY_GPT))
    model.add_head("clm", HEADS["clm"])
    assert model.heads["clm"].decoder.weight is model.backbone.input_embeddings.weight


def test_nsp_requires_a_pooler_and_an_encoder(wordpiece_tokenizer):
    from ptmzoo.errors import UserError

    (nsp,) = build_objectives(["nsp"], wordpiece_tokenizer, 0)
    no_pooler = build_backbone("bert", {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                        "intermediate_size": 64, "add_pooler": False})
    with pytest.raises(UserError, match="no pooler"):
        nsp.check_backbone(no_pooler, "custom")
    (mlm,) = build_objectives(["mlm"], wordpiece_tokenizer, 0)
    with pytest.raises(UserError, match="bidirectional encoder"):
        mlm.check_backbone(build_backbone("gpt2", TINY_GPT), "gpt2-tiny")
