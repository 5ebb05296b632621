"""An encoder with a pooler but only an MLM head converts to ``*ForMaskedLM`` (which HF builds
without a pooler): the pooler, which no MLM head reads, is left out, and the MLM logits match."""

import pytest
import torch

from ptmzoo.catalog import build_model
from ptmzoo.interop.hf import from_hf_model, to_hf_model
from ptmzoo.objectives.mlm import MLMHead

SHAPE = {"vocab_size": 97, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 48,
         "max_position_embeddings": 40}
FAMILIES = {"bert": ("BertForMaskedLM", {}), "roberta": ("RobertaForMaskedLM", {"type_vocab_size": 1}),
            "albert": ("AlbertForMaskedLM", {"embedding_size": 16})}


@pytest.mark.parametrize("family", FAMILIES)
def test_pooler_with_mlm_head_only_converts(family):
    architecture, extra = FAMILIES[family]
    torch.manual_seed(0)
    model = build_model(family, {**SHAPE, **extra, "add_pooler": True})
    model.add_head("mlm", MLMHead)
    model.eval()
    assert model.backbone.has_pooler
    hf = to_hf_model(model)
    assert type(hf).__name__ == architecture
    assert not any("pooler" in key for key in hf.state_dict())
    ids = torch.randint(5, SHAPE["vocab_size"], (2, 9))
    ids[1, 6:] = model.config.pad_token_id
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.inference_mode():
        ours = model.heads["mlm"].logits(model.backbone(ids, mask), {"input_ids": ids, "attention_mask": mask})
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    assert (ours[keep] - theirs[keep]).abs().max().item() < 1e-4
    back = from_hf_model(hf)  # the way back has the MLM head and no pooler
    assert set(back.heads) == {"mlm"} and not back.backbone.has_pooler
