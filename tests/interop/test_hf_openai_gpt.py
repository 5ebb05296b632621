"""GPT-1 <-> transformers ``openai-gpt``: the same logits (max |Δ| ≤ 1e-4 in float32, padded
batches, several shapes), identical tensors after a round trip, directories that
``from_pretrained`` reads, and greedy continuations token-identical to ``generate``."""

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import build_backbone
from ptmzoo.checkpoint import Pretrained
from ptmzoo.errors import UserError
from ptmzoo.generation import generate
from ptmzoo.interop.hf import export_hf, from_hf_model, to_hf_model
from ptmzoo.models.model import PtmModel
from tests.interop.hf_models import padded_batch, randomize, transformers

TOL = 1e-4
CONFIGS = {
    "even": {"vocab_size": 97, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "odd-relu": {"vocab_size": 150, "n_embd": 48, "n_layer": 3, "n_head": 3, "n_positions": 32, "afn": "relu",
                 "layer_norm_epsilon": 1e-6},
}


def openai_gpt(architecture, name, seed=0, scale=0.2):
    config = transformers.AutoConfig.for_model("openai-gpt", **CONFIGS[name])
    config._attn_implementation = "eager"
    model = randomize(getattr(transformers, architecture)(config), seed)
    with torch.no_grad():  # larger weights where logits must be far from ties (greedy decoding)
        for param in model.parameters():
            param.mul_(scale / 0.2)
    return model


def max_diff(a, b, mask):
    return (a - b).abs()[mask.bool()].max().item()


@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("architecture", ["OpenAIGPTModel", "OpenAIGPTLMHeadModel"])
def test_openai_gpt_parity(architecture, name, left):
    hf = openai_gpt(architecture, name)
    ptm = from_hf_model(hf)
    assert ptm.family == "gpt1" and list(ptm.heads) == (["clm"] if "LMHead" in architecture else [])
    ids, mask, _ = padded_batch(CONFIGS[name]["vocab_size"], [12, 9, 4], 12, left=left)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # openai-gpt counts positions from the row start
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
        out = ptm(ids, mask, position_ids=positions)
    assert max_diff(ref.hidden_states[-1], out.last_hidden_state, mask) <= TOL
    if "LMHead" in architecture:
        assert max_diff(ref.logits, out.logits, mask) <= TOL
        assert ptm.heads["clm"].decoder.weight is ptm.backbone.token.weight


@pytest.mark.parametrize("architecture", ["OpenAIGPTModel", "OpenAIGPTLMHeadModel"])
def test_round_trip_gives_identical_tensors(architecture):
    hf = openai_gpt(architecture, "odd-relu", seed=3)
    back = to_hf_model(from_hf_model(hf))
    assert type(back).__name__ == architecture
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_export_dir_loads_in_transformers_and_back(tmp_path):
    hf = openai_gpt("OpenAIGPTLMHeadModel", "even")
    ptm = from_hf_model(hf)
    export_hf(Pretrained(ptm, None, {}, ""), str(tmp_path / "gpt1-hf"))
    again = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "gpt1-hf")).eval()
    loaded = ptmzoo.load(str(tmp_path / "gpt1-hf"))
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, hf(ids).logits, atol=TOL, rtol=0)
        torch.testing.assert_close(loaded.model(ids).logits, hf(ids).logits, atol=TOL, rtol=0)


@pytest.mark.parametrize("family, config", [("gpt2", {"attention_window": 4}), ("gpt1", {"hidden_act": "gelu"})])
def test_banded_or_exact_gelu_models_do_not_export(family, config):
    model = PtmModel(family, build_backbone(family, {"vocab_size": 50, "hidden_size": 16, "num_layers": 2,
                                                     "num_heads": 2, "intermediate_size": 64, **config}))
    with pytest.raises(UserError, match="attention_window|openai-gpt needs"):
        to_hf_model(model)


def test_greedy_tokens_equal_transformers_generate():
    hf = openai_gpt("OpenAIGPTLMHeadModel", "even", seed=5, scale=1.0)
    ptm = from_hf_model(hf)
    torch.manual_seed(0)
    prompts = [torch.randint(1, 97, (n,)).tolist() for n in (9, 4, 6)]
    ours = generate(ptm, prompts, max_new_tokens=20).token_ids  # one left-padded batch
    for prompt, expected in zip(prompts, ours):  # openai-gpt has no cache and no left-padding positions
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, pad_token_id=0,
                                 eos_token_id=None)
        assert theirs[0, len(prompt):].tolist() == expected
    assert len(set(map(tuple, ours))) == 3  # not a degenerate repetition
