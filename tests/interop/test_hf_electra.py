"""ELECTRA: discriminator, generator, bare encoder and classifier built from transformers models
compute the same outputs (max |Δ| ≤ 1e-4 in float32, padded batches); HF -> ptmzoo -> HF gives
identical tensors; a ptmzoo ELECTRA with its generator exports as a discriminator/ + generator/
pair that transformers opens and that ptmzoo opens again as one model."""

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS as HEAD_CLASSES
from ptmzoo.catalog import build_model
from ptmzoo.checkpoint import Pretrained
from ptmzoo.errors import UserError
from ptmzoo.interop.hf import export_hf, from_hf_model, to_hf_model
from ptmzoo.objectives.rtd import generator_of
from tests.interop.hf_models import padded_batch, randomize, transformers

TOL = 1e-4
SHAPES = {  # E != H with projection and odd head count; E = H (no projection), other vocab and pad id
    "projected-odd": {"vocab_size": 99, "embedding_size": 16, "hidden_size": 48, "num_hidden_layers": 2,
                      "num_attention_heads": 3, "intermediate_size": 64, "max_position_embeddings": 40},
    "square": {"vocab_size": 150, "embedding_size": 32, "hidden_size": 32, "num_hidden_layers": 3,
               "num_attention_heads": 4, "intermediate_size": 37, "max_position_embeddings": 30,
               "type_vocab_size": 3, "hidden_act": "gelu", "layer_norm_eps": 1e-7, "pad_token_id": 2},
}
HEADS = {"Model": {}, "ForPreTraining": {"rtd": "logits"}, "ForMaskedLM": {"mlm": "logits"},
         "ForSequenceClassification": {"classification": "logits"}}
CASES = [(shape, suffix) for shape in SHAPES for suffix in HEADS]


def build_hf(shape, suffix, seed=0):
    config = transformers.ElectraConfig(**SHAPES[shape])
    if suffix == "ForSequenceClassification":
        config.num_labels = 3
    config._attn_implementation = "eager"
    return randomize(getattr(transformers, "Electra" + suffix)(config), seed)


def batch(config):
    types = config.type_vocab_size
    ids, mask, segments = padded_batch(config.vocab_size, [11, 7, 3], 11, types if types > 1 else None)
    return ids.masked_fill(mask == 0, config.pad_token_id), mask, segments


def max_diff(a, b, mask=None):
    diff = (a.float() - b.float()).abs()
    return (diff[mask.bool()] if mask is not None else diff).max().item()


@pytest.mark.parametrize("shape,suffix", CASES)
def test_parity_with_transformers(shape, suffix):
    hf = build_hf(shape, suffix)
    ptm = from_hf_model(hf)
    assert "generator" not in ptm.helpers  # one HF checkpoint is one network
    ids, mask, segments = batch(hf.config)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=segments, output_hidden_states=True)
        out = ptm(ids, mask, segments)
    assert max_diff(ref.hidden_states[-1], out.last_hidden_state, mask) <= TOL
    assert set(out.head_logits) == set(HEADS[suffix])
    for head, field in HEADS[suffix].items():
        assert max_diff(ref[field], out.head_logits[head], mask if head != "classification" else None) <= TOL, head


@pytest.mark.parametrize("shape,suffix", CASES)
def test_round_trip_gives_identical_tensors(shape, suffix):
    hf = build_hf(shape, suffix, seed=3)
    back = to_hf_model(from_hf_model(hf))
    assert type(back).__name__ == "Electra" + suffix
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after)
    for key in before:
        assert torch.equal(before[key], after[key]), key


def _ptm_electra(**extra):
    config = {"vocab_size": 60, "hidden_size": 32, "embedding_size": 16, "num_layers": 2, "num_heads": 4,
              "intermediate_size": 48, "max_position_embeddings": 32, "generator_size": 0.5, **extra}
    model = build_model("electra", config, helpers={"generator": {"kind": "electra_generator"}})
    model.add_head("rtd", HEAD_CLASSES["rtd"])
    return randomize(model, seed=5)


def test_pair_export_opens_in_transformers_and_back_in_ptmzoo(tmp_path):
    model = _ptm_electra()
    meta = {"family": "electra", "config": model.config.to_dict(), "heads": model.heads_spec(),
            "helpers": model.helpers_spec()}
    written = export_hf(Pretrained(model, None, meta, "mem"), str(tmp_path / "hf"))
    assert written == "discriminator/ ElectraForPreTraining + generator/ ElectraForMaskedLM"
    disc = transformers.ElectraForPreTraining.from_pretrained(str(tmp_path / "hf" / "discriminator")).eval()
    gen = transformers.ElectraForMaskedLM.from_pretrained(str(tmp_path / "hf" / "generator")).eval()
    assert gen.config.hidden_size == 16 and gen.config.embedding_size == 16
    ids, mask, _ = batch(disc.config)
    with torch.no_grad():
        assert max_diff(disc(input_ids=ids, attention_mask=mask).logits, model(ids, mask).logits, mask) <= TOL
        gen_ref = model.helpers["generator"](ids, mask).logits
        assert max_diff(gen(input_ids=ids, attention_mask=mask).logits, gen_ref, mask) <= TOL
    loaded = ptmzoo.load(str(tmp_path / "hf"))  # the pair: one model, embeddings shared again
    assert "generator" in loaded.model.helpers
    assert loaded.model.helpers["generator"].backbone.embeddings.word is loaded.model.backbone.embeddings.word
    before, after = model.state_dict(), loaded.model.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)


def test_generator_head_activation_and_missing_generator_are_refused(tmp_path):
    hf = build_hf("square", "ForMaskedLM")
    hf.config.hidden_act = "relu"
    with pytest.raises(UserError, match="generator head uses gelu"):
        from_hf_model(hf)
    alone = from_hf_model(build_hf("square", "ForPreTraining"))
    with pytest.raises(UserError, match="has no generator"):
        generator_of(alone)  # what the rtd objective's training step asks for
