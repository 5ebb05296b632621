"""XLNet: ptmzoo models built from transformers XLNetModel / XLNetLMHeadModel compute the same
states, logits and memories (max |Δ| ≤ 1e-4 in float32) on random models of several shapes --
padded batches with two segments, XLNet's permutation masks and target mappings (the query
stream), and a second segment that reads the first one's memory -- HF -> ptmzoo -> HF gives back
identical tensors, saved directories open with `ptmzoo.load` and export back, and what HF XLNet
cannot express ends in one clear line."""

import json
import os

import numpy as np
import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_backbone, count_parameters
from ptmzoo.cli import main
from ptmzoo.errors import UserError
from ptmzoo.interop.hf import export_hf, from_hf_model, to_hf_model
from ptmzoo.models.transfo_xl import MemoryModel
from ptmzoo.objectives.plm import permutation_mask, permutation_ranks, span_targets
from ptmzoo.presets import get_preset
from tests.conftest import perturb, run_cli
from tests.interop.hf_models import randomize, round_trip, transformers

TOL = 1e-4
CONFIGS = {  # shapes: even and odd head counts, ReLU, clamped distances, a bounded memory, reuse_len, uni
    "even": {"vocab_size": 99, "d_model": 32, "n_layer": 2, "n_head": 4, "d_inner": 48, "mem_len": None},
    "odd-heads-relu-clamp": {"vocab_size": 120, "d_model": 48, "n_layer": 3, "n_head": 3, "d_inner": 64,
                             "ff_activation": "relu", "clamp_len": 5, "mem_len": 8, "layer_norm_eps": 1e-7},
    "reuse-gelu-new": {"vocab_size": 80, "d_model": 40, "n_layer": 2, "n_head": 5, "d_inner": 56,
                       "ff_activation": "gelu_new", "mem_len": 12, "reuse_len": 4},
    "uni": {"vocab_size": 70, "d_model": 24, "n_layer": 2, "n_head": 2, "d_inner": 30, "attn_type": "uni",
            "mem_len": 16},
}
ARCHS = ["XLNetModel", "XLNetLMHeadModel"]


def build_hf(name, architecture, seed=0):
    config = transformers.XLNetConfig(**CONFIGS[name], dropout=0.1)
    return randomize(getattr(transformers, architecture)(config), seed)


def plm_inputs(vocab_size, rows=3, length=9, predict=3, seed=1, pad=True):
    """ids, attention mask (row 1 right-padded, row 2 left-padded), two segments, and the
    permutation masks and target mappings of XLNet's objective (spans, local permutations)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = torch.randint(0, vocab_size, (rows, length), generator=gen)
    mask = torch.ones(rows, length, dtype=torch.long)
    if pad:
        mask[1, length - 2:] = 0
        mask[2, :3] = 0
    types = torch.zeros_like(ids)
    types[:, length // 2:] = 1
    perm = np.zeros((rows, length, length), dtype=np.float32)
    mapping = torch.zeros(rows, predict, length)
    for row in range(rows):
        real = np.flatnonzero(mask[row].numpy())
        targets = np.zeros(length, dtype=bool)
        targets[real[span_targets(rng.random(len(real)) < 0.6, predict, rng, max_span=2, context=2)]] = True
        functional = mask[row].numpy() == 0
        perm[row] = permutation_mask(permutation_ranks(length, rng, block=5), targets, functional)
        mapping[row, np.arange(predict), torch.as_tensor(np.flatnonzero(targets))] = 1.0
    return ids, mask, types, torch.from_numpy(perm), mapping


def convert(*args):
    """``ptmzoo convert ARGS`` in this process (a subprocess would import torch again)."""
    assert main(["convert", *args]) == 0


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def mems_diff(hf_mems, ptm_mems):
    """HF keeps memories [length, batch, hidden], ptmzoo [batch, length, hidden]."""
    assert len(hf_mems) == len(ptm_mems)
    return max(max_diff(a.transpose(0, 1), b) for a, b in zip(hf_mems, ptm_mems))


CASES = {  # the inputs of each parity case beyond the token ids
    "plain": lambda m, t, p, tm: {},
    "padded": lambda m, t, p, tm: {"attention_mask": m},
    "padded-two-segments": lambda m, t, p, tm: {"attention_mask": m, "token_type_ids": t},
    "permutation": lambda m, t, p, tm: {"attention_mask": m, "token_type_ids": t, "perm_mask": p},
    "query-stream": lambda m, t, p, tm: {"attention_mask": m, "token_type_ids": t, "perm_mask": p,
                                         "target_mapping": tm},
}


def parity(hf, ptm, case, seed=1):
    """max |Δ| of outputs, memories and hidden states on one segment, then on a second one that
    reads the first one's memory (with its own masks)."""
    ids, mask, types, perm, mapping = plm_inputs(hf.config.vocab_size, seed=seed)
    first = CASES[case](mask, types, perm, mapping)
    ids2, mask2, types2, perm2, mapping2 = plm_inputs(hf.config.vocab_size, length=7, seed=seed + 1, pad=False)
    second = CASES[case](mask2, types2, perm2, mapping2)
    diffs = {}
    with torch.no_grad():
        ref = hf(input_ids=ids, use_mems=True, output_hidden_states=True, **first)
        out = ptm(ids, output_hidden_states=True, **first)
        key = "logits" if hasattr(ref, "logits") else "last_hidden_state"
        diffs["segment 1"] = max_diff(getattr(ref, key), out.logits if key == "logits" else out.last_hidden_state)
        diffs["memory 1"] = mems_diff(ref.mems, out.mems)
        if "target_mapping" not in first:  # HF's hidden states interleave both streams otherwise
            diffs["hidden states"] = max(max_diff(a, b) for a, b in zip(ref.hidden_states, out.hidden_states))
        ref2 = hf(input_ids=ids2, mems=ref.mems, use_mems=True, **second)
        out2 = ptm(ids2, mems=out.mems, **second)
        diffs["segment 2 (memory)"] = max_diff(getattr(ref2, key), out2.logits if key == "logits"
                                               else out2.last_hidden_state)
        diffs["memory 2"] = mems_diff(ref2.mems, out2.mems)
    return diffs


# transformers' uni-directional mask takes no padding or permutation mask (an in-place add that
# cannot broadcast over the batch), so "uni" is compared on the cases without one
PARITY = [(name, case) for name in CONFIGS for case in CASES if name != "uni" or case == "plain"]


@pytest.mark.parametrize("name,case", PARITY)
@pytest.mark.parametrize("architecture", ARCHS)
def test_parity_with_transformers(architecture, name, case):
    hf = build_hf(name, architecture)
    ptm = from_hf_model(hf)
    assert isinstance(ptm, MemoryModel) and list(ptm.heads) == (["plm"] if architecture == "XLNetLMHeadModel" else [])
    diffs = parity(hf, ptm, case)
    assert max(diffs.values()) <= TOL, diffs


def test_query_stream_output_is_one_row_per_prediction():
    hf = build_hf("even", "XLNetLMHeadModel")
    ptm = from_hf_model(hf)
    ids, mask, _, perm, mapping = plm_inputs(hf.config.vocab_size)
    with torch.no_grad():
        out = ptm(ids, attention_mask=mask, perm_mask=perm, target_mapping=mapping)
        plain = ptm(ids, attention_mask=mask)
    assert out.logits.shape == (3, 3, hf.config.vocab_size) and plain.logits.shape == (3, 9, hf.config.vocab_size)
    # the query stream does not see the content of the token it predicts: changing it changes nothing there
    row, position = 0, int(mapping[0, 0].argmax())
    changed = ids.clone()
    changed[row, position] = (ids[row, position] + 1) % hf.config.vocab_size
    with torch.no_grad():
        again = ptm(changed, attention_mask=mask, perm_mask=perm, target_mapping=mapping)
    assert max_diff(again.logits[row, 0], out.logits[row, 0]) < 1e-5
    assert max_diff(again.logits[1:], out.logits[1:]) < 1e-5


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("architecture", ARCHS)
def test_round_trip_gives_identical_tensors(architecture, name):
    hf = build_hf(name, architecture, seed=3)
    back = round_trip(hf)
    assert type(back).__name__ == architecture
    for field in ("d_model", "n_head", "d_inner", "ff_activation", "clamp_len", "reuse_len", "attn_type",
                  "layer_norm_eps", "dropout"):
        assert getattr(back.config, field) == getattr(hf.config, field), field
    assert (back.config.mem_len or None) == (hf.config.mem_len or None)


def test_saved_dir_loads_and_converts_back(tmp_path):
    hf = build_hf("odd-heads-relu-clamp", "XLNetLMHeadModel")
    hf.save_pretrained(str(tmp_path / "hf"))  # the tied lm_loss.weight is not written
    loaded = ptmzoo.load(str(tmp_path / "hf"))
    assert loaded.family == "xlnet" and list(loaded.model.heads) == ["plm"]
    assert loaded.model.heads["plm"].decoder.weight is loaded.model.backbone.embeddings.layers[0].weight
    ids, mask, _, perm, mapping = plm_inputs(hf.config.vocab_size)
    with torch.no_grad():
        assert max_diff(hf(input_ids=ids, attention_mask=mask, perm_mask=perm, target_mapping=mapping).logits,
                        loaded.model(ids, attention_mask=mask, perm_mask=perm, target_mapping=mapping).logits) <= TOL
    ptm_dir, out = str(tmp_path / "ptm"), str(tmp_path / "back")
    convert(str(tmp_path / "hf"), ptm_dir, "--to", "ptmzoo")
    convert(ptm_dir, out, "--to", "hf")
    back = transformers.XLNetLMHeadModel.from_pretrained(out).eval()
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    with open(os.path.join(out, "config.json")) as fh:
        assert json.load(fh)["architectures"] == ["XLNetLMHeadModel"]


def _ptm_xlnet(**model):
    """The xlnet-tiny preset, shrunk, with its PLM head and random weights."""
    config = {**get_preset("xlnet-tiny").model, "vocab_size": 60, "hidden_size": 32, "num_heads": 4,
              "intermediate_size": 48, **model}
    torch.manual_seed(0)
    net = MemoryModel("xlnet", build_backbone("xlnet", config))
    net.add_head("plm", HEADS["plm"])
    return perturb(net)


@pytest.mark.parametrize("model", [{}, {"mem_len": 0}, {"mem_len": 5, "hidden_act": "relu"}])
def test_ptmzoo_xlnet_exports_to_transformers(model, tmp_path):
    from ptmzoo.checkpoint import save_pretrained

    net = _ptm_xlnet(**model)
    save_pretrained(str(tmp_path / "ptm"), net, None)
    convert(str(tmp_path / "ptm"), str(tmp_path / "hf"), "--to", "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert type(hf).__name__ == "XLNetLMHeadModel"
    ids, mask, types, perm, mapping = plm_inputs(60)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, perm_mask=perm, target_mapping=mapping)
        out = net(ids, attention_mask=mask, token_type_ids=types, perm_mask=perm, target_mapping=mapping)
    assert max_diff(ref.logits, out.logits) <= TOL
    assert (ref.mems is None) == (out.mems is None)
    if out.mems is not None:
        assert mems_diff(ref.mems, out.mems) <= TOL


def _save(hf, path):
    hf.save_pretrained(str(path))
    return str(path)


def test_unsupported_hf_settings_are_refused(tmp_path):
    config = transformers.XLNetConfig(**CONFIGS["even"], bi_data=True)
    with pytest.raises(UserError, match="bi_data=true is not supported"):
        ptmzoo.load(_save(transformers.XLNetModel(config), tmp_path / "bi"))
    result = run_cli("convert", str(tmp_path / "bi"), str(tmp_path / "out"), "--to", "ptmzoo")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    classifier = transformers.XLNetForSequenceClassification(transformers.XLNetConfig(**CONFIGS["even"]))
    with pytest.raises(UserError, match="XLNetForSequenceClassification is not supported; ptmzoo reads XLNetModel, "
                                        "XLNetLMHeadModel"):
        ptmzoo.load(_save(classifier, tmp_path / "cls"))


@pytest.mark.parametrize("model,message", [
    ({"untie_r": False}, "u and v in every layer"),
    ({"attention_dropout": 0.0}, "has one dropout"),
    ({"scale_embeddings": True}, "does not scale its embeddings"),
])
def test_settings_hf_xlnet_cannot_express_are_refused(model, message, tmp_path):
    from ptmzoo.checkpoint import Pretrained

    with pytest.raises(UserError, match=message):
        to_hf_model(_ptm_xlnet(**model))
    with pytest.raises(UserError, match=message):
        export_hf(Pretrained(_ptm_xlnet(**model), None, {"family": "xlnet"}, ""), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("name", ["xlnet-base", "xlnet-large"])
def test_preset_is_the_size_of_hf_xlnet_with_lm_head(name):
    """ptmzoo zoo's count (backbone + the PLM head, the tied projection once) is exactly the
    parameter count of XLNetLMHeadModel of the released size."""
    m = get_preset(name).model
    with torch.device("meta"):
        reference = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
            vocab_size=m["vocab_size"], d_model=m["hidden_size"], n_layer=m["num_layers"], n_head=m["num_heads"],
            d_inner=m["intermediate_size"]))
    expected = sum(p.numel() for p in reference.parameters())
    assert count_parameters(get_preset(name)) == expected
    assert expected == {"xlnet-base": 116_750_336, "xlnet-large": 360_300_800}[name]
