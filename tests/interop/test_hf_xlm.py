"""XLM: ptmzoo models built from transformers XLMModel / XLMWithLMHeadModel compute the same
hidden states and LM logits (max |Δ| ≤ 1e-4 in float32, padded batches with language ids, every
position: both sides zero the padded states), HF -> ptmzoo -> HF gives back identical tensors,
saved directories open with `ptmzoo.load` and export back, and what HF XLM cannot express (or
ptmzoo cannot compute) ends in one clear line."""

import json
import os

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.errors import UserError
from ptmzoo.interop.hf import export_hf, from_hf_model, to_hf_model
from ptmzoo.models.model import PtmModel
from ptmzoo.presets import get_preset
from tests.conftest import perturb, run_cli
from tests.interop.hf_models import randomize, round_trip, transformers

TOL = 1e-4
CONFIGS = {  # shapes: odd head counts, one language (no table) and several, sinusoidal, ReLU, causal
    "one-language": {"vocab_size": 99, "emb_dim": 32, "n_layers": 2, "n_heads": 4, "n_langs": 1,
                     "max_position_embeddings": 40},
    "three-languages-odd": {"vocab_size": 150, "emb_dim": 48, "n_layers": 3, "n_heads": 3, "n_langs": 3,
                            "max_position_embeddings": 30, "pad_token_id": 1, "layer_norm_eps": 1e-7,
                            "id2lang": {"0": "de", "1": "en", "2": "zh"}, "lang2id": {"de": 0, "en": 1, "zh": 2}},
    "sinusoidal-relu-no-lang-emb": {"vocab_size": 120, "emb_dim": 36, "n_layers": 2, "n_heads": 3, "n_langs": 2,
                                    "use_lang_emb": False, "sinusoidal_embeddings": True, "gelu_activation": False,
                                    "max_position_embeddings": 24},
    "causal-five-heads": {"vocab_size": 90, "emb_dim": 40, "n_layers": 2, "n_heads": 5, "n_langs": 2,
                          "causal": True, "max_position_embeddings": 32},
}
ARCHS = ["XLMModel", "XLMWithLMHeadModel"]


def build_hf(name, architecture, seed=0):
    config = transformers.XLMConfig(**CONFIGS[name])
    model = getattr(transformers, architecture)(config)
    randomize(model, seed)
    if config.sinusoidal_embeddings:  # the table HF builds (randomize overwrote it)
        from transformers.models.xlm.modeling_xlm import create_sinusoidal_embeddings

        table = model.get_input_embeddings().weight.new_empty(config.max_position_embeddings, config.emb_dim)
        with torch.no_grad():
            model.base_model.position_embeddings.weight.copy_(create_sinusoidal_embeddings(*table.shape, table))
    return model


def batch(config, lengths=(11, 7, 3), length=11, seed=1):
    """Right-padded rows (pads written as the pad id, none inside the text), an attention mask and
    random language ids per token (what TLM gives: each half of a pair its own language)."""
    gen = torch.Generator().manual_seed(seed)
    pad = config.pad_token_id
    ids = torch.randint(0, config.vocab_size, (len(lengths), length), generator=gen)
    ids = torch.where(ids == pad, (ids + 1) % config.vocab_size, ids)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    langs = torch.randint(0, config.n_langs, (len(lengths), length), generator=gen)
    return ids.masked_fill(mask == 0, pad), mask, langs


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("architecture", ARCHS)
def test_parity_with_transformers(architecture, name):
    hf = build_hf(name, architecture)
    ptm = from_hf_model(hf)
    assert ptm.config.type_vocab_size == (hf.config.n_langs if hf.config.n_langs > 1 and hf.config.use_lang_emb else 0)
    ids, mask, langs = batch(hf.config)
    positions = torch.cat([torch.arange(5), torch.arange(6)])[None].expand(3, -1)  # TLM: restart at the target
    for extra in ({"langs": langs}, {"langs": langs, "position_ids": positions}, {}):
        with torch.no_grad():
            ref = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True, **extra)
            out = ptm(ids, mask, extra.get("langs"), position_ids=extra.get("position_ids"),
                      output_hidden_states=True)
        # every position: XLM zeroes the states of padded tokens on both sides
        assert len(ref.hidden_states) == len(out.hidden_states)
        for layer, (a, b) in enumerate(zip(ref.hidden_states, out.hidden_states)):
            assert max_diff(a, b) <= TOL, (layer, extra.keys())
        assert out.hidden_states[-1][mask == 0].abs().max() == 0
        if architecture == "XLMWithLMHeadModel":
            assert list(out.head_logits) == ["mlm"]
            assert max_diff(ref.logits, out.logits) <= TOL, extra.keys()
        else:
            assert not out.head_logits


def test_language_ids_change_the_states_and_a_single_language_has_no_table():
    hf = build_hf("three-languages-odd", "XLMModel")
    ptm = from_hf_model(hf)
    ids, mask, langs = batch(hf.config)
    with torch.no_grad():
        assert max_diff(ptm(ids, mask, langs).last_hidden_state, ptm(ids, mask, (langs + 1) % 3).last_hidden_state) > 0.1
    assert ptm.config.languages == ["de", "en", "zh"]
    one = from_hf_model(build_hf("one-language", "XLMModel"))
    assert one.backbone.embeddings.token_type is None and one.config.languages == ["lang0"]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("architecture", ARCHS)
def test_round_trip_gives_identical_tensors(architecture, name):
    hf = build_hf(name, architecture, seed=3)
    back = round_trip(hf)
    assert type(back).__name__ == architecture
    for field in ("n_langs", "use_lang_emb", "sinusoidal_embeddings", "causal", "gelu_activation", "emb_dim",
                  "n_heads", "pad_token_id", "layer_norm_eps"):
        assert getattr(back.config, field) == getattr(hf.config, field), field


def test_saved_dir_loads_and_converts_back(tmp_path):
    hf = build_hf("three-languages-odd", "XLMWithLMHeadModel")
    hf.save_pretrained(str(tmp_path / "hf"))  # the tied pred_layer.proj.weight is not written
    loaded = ptmzoo.load(str(tmp_path / "hf"))
    assert loaded.family == "xlm" and list(loaded.model.heads) == ["mlm"]
    assert loaded.model.heads["mlm"].decoder.weight is loaded.model.backbone.embeddings.word.weight
    ids, mask, langs = batch(hf.config)
    with torch.no_grad():
        assert max_diff(hf(input_ids=ids, attention_mask=mask, langs=langs).logits,
                        loaded.model(ids, mask, langs).logits) <= TOL
    ptm_dir, out = str(tmp_path / "ptm"), str(tmp_path / "back")
    for args in (("convert", str(tmp_path / "hf"), ptm_dir, "--to", "ptmzoo"), ("convert", ptm_dir, out, "--to", "hf")):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
    back = transformers.XLMWithLMHeadModel.from_pretrained(out).eval()
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert back.config.lang2id == {"de": 0, "en": 1, "zh": 2} and back.config.n_langs == 3
    with open(os.path.join(out, "config.json")) as fh:
        assert json.load(fh)["architectures"] == ["XLMWithLMHeadModel"]


def _ptm_xlm(**model):
    """A ptmzoo XLM from the xlm-tiny preset, shrunk, with its TLM head (kind mlm) and random weights."""
    config = {**get_preset("xlm-tiny").model, "vocab_size": 80, "hidden_size": 32, "num_heads": 4,
              "intermediate_size": 128, "max_position_embeddings": 32, **model}
    torch.manual_seed(0)
    net = PtmModel("xlm", build_backbone("xlm", config))
    net.add_head("tlm", HEADS["mlm"])
    return perturb(net)


@pytest.mark.parametrize("model", [{}, {"sinusoidal_positions": True, "languages": ["en", "fr", "zh"]},
                                   {"causal": True, "hidden_act": "relu"}])
def test_ptmzoo_xlm_exports_to_transformers(model, tmp_path):
    """A model pre-trained in ptmzoo (preset xlm-tiny: XLM's prediction layer) opens in transformers."""
    from ptmzoo.checkpoint import save_pretrained

    net = _ptm_xlm(**model)
    assert net.heads["tlm"].dense is None  # the preset's head is XLM's: the projection alone
    if model.get("sinusoidal_positions"):
        assert not net.backbone.embeddings.position.weight.requires_grad
    save_pretrained(str(tmp_path / "ptm"), net, None)
    assert run_cli("convert", str(tmp_path / "ptm"), str(tmp_path / "hf"), "--to", "hf").returncode == 0
    hf = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert type(hf).__name__ == "XLMWithLMHeadModel"
    assert hf.config.lang2id == {lang: i for i, lang in enumerate(net.config.languages)}
    ids, mask, langs = batch(hf.config, length=9, lengths=(9, 4))
    with torch.no_grad():
        assert max_diff(hf(input_ids=ids, attention_mask=mask, langs=langs).logits, net(ids, mask, langs).logits) <= TOL


def _save(hf, path):
    hf.save_pretrained(str(path))
    return str(path)


def test_unsupported_hf_settings_are_refused(tmp_path):
    asm = transformers.XLMConfig(**CONFIGS["one-language"], asm=True, asm_cutoffs=[20, 50], asm_div_value=4.0)
    path = tmp_path / "asm"
    os.makedirs(path)
    asm.to_json_file(str(path / "config.json"))
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match="asm=True .* is not supported"):
        ptmzoo.load(str(path))
    result = run_cli("convert", str(path), str(tmp_path / "out"), "--to", "ptmzoo")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    classifier = transformers.XLMForSequenceClassification(transformers.XLMConfig(**CONFIGS["one-language"]))
    with pytest.raises(UserError, match="XLMForSequenceClassification is not supported; ptmzoo reads XLMModel, "
                                        "XLMWithLMHeadModel"):
        ptmzoo.load(_save(classifier, tmp_path / "cls"))
    named = dict(CONFIGS["three-languages-odd"], id2lang={"0": "de", "1": "en"}, lang2id=None)
    with pytest.raises(UserError, match=r"name languages \[0, 1\] but n_langs is 3"):
        ptmzoo.load(_save(transformers.XLMModel(transformers.XLMConfig(**named)), tmp_path / "named"))


@pytest.mark.parametrize("model,message", [
    ({"lm_head_transform": True}, "prediction layer is the tied projection alone"),
    ({"intermediate_size": 100}, r"4 x hidden_size \(128\) wide"),
    ({"hidden_act": "gelu_tanh"}, "computes gelu or relu"),
    ({"add_pooler": True}, "have no pooler"),
])
def test_settings_hf_xlm_cannot_express_are_refused(model, message):
    with pytest.raises(UserError, match=message):
        to_hf_model(_ptm_xlm(**model))


def test_export_refuses_a_bert_style_head_before_writing(tmp_path):
    from ptmzoo.checkpoint import Pretrained

    net = _ptm_xlm(lm_head_transform=True)
    with pytest.raises(UserError, match="model.lm_head_transform=true"):
        export_hf(Pretrained(net, None, {"family": "xlm"}, ""), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_xlm_base_preset_is_the_size_of_hf_xlm_with_lm_head():
    """The preset and its TLM head are exactly XLMWithLMHeadModel (same tensors, tied ones once)."""
    from ptmzoo.catalog import count_parameters

    m = get_preset("xlm-base").model
    with torch.device("meta"):
        reference = transformers.XLMWithLMHeadModel(transformers.XLMConfig(
            vocab_size=30522, emb_dim=m["hidden_size"], n_layers=m["num_layers"], n_heads=m["num_heads"],
            n_langs=len(m["languages"])))
    assert count_parameters(get_preset("xlm-base")) == sum(p.numel() for p in reference.parameters())


def test_xlm_tokenizer_files_are_refused_but_the_model_loads(tmp_path):
    """XLM's vocab.json + merges.txt are Moses-tokenized words in BPE with </w> word ends: read as
    byte-level BPE they would give wrong ids, so ptmzoo refuses them in one line; the model
    still opens (without a tokenizer) and converts, with a note."""
    from ptmzoo.data.tokenizers import Tokenizer, UnsupportedTokenizer

    hf = build_hf("three-languages-odd", "XLMWithLMHeadModel")
    path = tmp_path / "xlm"
    hf.save_pretrained(str(path))
    vocab = ["<s>", "</s>", "<pad>", "<unk>", "t", "h", "e</w>", "th", "the</w>", "a</w>"]
    (path / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (path / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    with pytest.raises(UnsupportedTokenizer, match="</w> word ends are XLM's/GPT-1's tokenizer"):
        Tokenizer.load(str(path))
    loaded = ptmzoo.load(str(path))
    assert loaded.tokenizer is None and "XLM" in loaded.meta["tokenizer_note"]
    (path / "merges.txt").write_text("#version: 0.2\nt h\n")  # no </w> in sight: the config names the class
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMTokenizer"}))
    with pytest.raises(UnsupportedTokenizer):
        Tokenizer.load(str(path))
    result = run_cli("convert", str(path), str(tmp_path / "ptm"), "--to", "ptmzoo")
    assert result.returncode == 0, result.stderr
    assert "note: no tokenizer written" in result.stdout
    assert ptmzoo.load(str(tmp_path / "ptm")).tokenizer is None
