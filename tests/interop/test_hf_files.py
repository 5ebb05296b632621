"""Hugging Face model directories: `ptmzoo.load` reads them (weights, heads, tokenizer), `ptmzoo
convert` writes them back, and foreign or unsupported configs end in one clear line."""

import json
import os

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS
from ptmzoo.cli import main
from ptmzoo.errors import UserError
from tests.conftest import perturb, run_cli
from tests.interop.hf_models import BERT_CONFIGS, GPT2_CONFIGS, hf_model, transformers

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "ran", "a", "big",
         "red", "##s", "##ed", "house", "play", "today", ",", ".", "!", "中", "文", "很", "好"]
SENTENCES = ["The cats sat on the mat.", "A big red dog played today!", "中文很好, the house"]


@pytest.fixture
def bert_dir(tmp_path):
    """BertForPreTraining saved by transformers, with a fast WordPiece tokenizer."""
    path = str(tmp_path / "hf-bert")
    hf = hf_model("BertForPreTraining", BERT_CONFIGS["bert-small-even"])
    hf.save_pretrained(path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    transformers.BertTokenizerFast(str(vocab)).save_pretrained(path)
    return path, hf


@pytest.fixture
def gpt2_dir(tmp_path):
    """GPT2LMHeadModel with GPT-2's vocab.json + merges.txt files (byte-level BPE)."""
    from tokenizers import ByteLevelBPETokenizer

    path = str(tmp_path / "hf-gpt2")
    hf = hf_model("GPT2LMHeadModel", dict(GPT2_CONFIGS["gpt2-small-even"], vocab_size=300))
    hf.save_pretrained(path)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 5, vocab_size=256 + 40, min_frequency=1, show_progress=False,
                            special_tokens=["<|endoftext|>"])
    bpe.save_model(path)
    return path, hf


def _bert_inputs(tokenizer):
    enc = tokenizer(SENTENCES[:2], SENTENCES[1:3], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def test_load_hf_bert_dir_with_heads_and_tokenizer(bert_dir):
    path, hf = bert_dir
    loaded = ptmzoo.load(path)
    assert loaded.family == "bert" and set(loaded.model.heads) == {"mlm", "nsp"}
    hf_tok = transformers.AutoTokenizer.from_pretrained(path)
    for text, pair in zip(SENTENCES, SENTENCES[1:] + [None]):
        assert loaded.tokenizer.encode(text, pair) == hf_tok(text, pair)["input_ids"]
    ids, mask, types = _bert_inputs(hf_tok)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out = loaded.model(ids, mask, types)
    real = mask.bool()
    assert (ref.prediction_logits - out.head_logits["mlm"]).abs()[real].max() <= 1e-4
    assert (ref.seq_relationship_logits - out.head_logits["nsp"]).abs().max() <= 1e-4


def test_load_hf_gpt2_dir_with_bpe_files(gpt2_dir):
    path, hf = gpt2_dir
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(path)) and "tokenizer.json" not in os.listdir(path)
    loaded = ptmzoo.load(path)
    hf_tok = transformers.GPT2Tokenizer(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"))
    for text in SENTENCES:
        assert loaded.tokenizer.encode(text) == hf_tok(text)["input_ids"]
        assert loaded.tokenizer.decode(loaded.tokenizer.encode(text)) == text
    ids = torch.tensor([loaded.tokenizer.encode(SENTENCES[0])])
    with torch.no_grad():
        assert (hf(input_ids=ids).logits - loaded.model(ids).logits).abs().max() <= 1e-4


def test_pytorch_model_bin_and_old_key_names(tmp_path):
    """Older checkpoints: pytorch_model.bin, LayerNorm gamma/beta, GPT-2 keys without prefix + mask buffers."""
    hf = hf_model("GPT2LMHeadModel", GPT2_CONFIGS["gpt2-small-even"])
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    state["h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    os.makedirs(tmp_path / "old")
    torch.save(state, tmp_path / "old" / "pytorch_model.bin")
    hf.config.architectures = ["GPT2LMHeadModel"]  # the tied lm_head is not in the file: the class says it is there
    hf.config.to_json_file(str(tmp_path / "old" / "config.json"))
    loaded = ptmzoo.load(str(tmp_path / "old"))
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        assert (hf(input_ids=ids).logits - loaded.model(ids).logits).abs().max() <= 1e-4

    bert = hf_model("BertModel", BERT_CONFIGS["bert-odd-heads"])
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in bert.state_dict().items()}
    os.makedirs(tmp_path / "gamma")
    torch.save(state, tmp_path / "gamma" / "pytorch_model.bin")
    bert.config.to_json_file(str(tmp_path / "gamma" / "config.json"))
    loaded = ptmzoo.load(str(tmp_path / "gamma"))
    with torch.no_grad():
        assert (bert(input_ids=ids).last_hidden_state - loaded.model(ids).last_hidden_state).abs().max() <= 1e-4


def test_sharded_safetensors(tmp_path):
    hf = hf_model("BertForMaskedLM", BERT_CONFIGS["bert-odd-heads"])
    hf.save_pretrained(str(tmp_path / "sharded"), max_shard_size="50KB")
    assert "model.safetensors.index.json" in os.listdir(tmp_path / "sharded")
    loaded = ptmzoo.load(str(tmp_path / "sharded"))
    assert list(loaded.model.heads) == ["mlm"] and not loaded.model.backbone.has_pooler
    ids = torch.tensor([[3, 8, 13, 21, 34]])
    with torch.no_grad():
        assert (hf(input_ids=ids).logits - loaded.model(ids).logits).abs().max() <= 1e-4


def test_convert_cli_round_trip(bert_dir, tmp_path, capsys):
    path, hf = bert_dir
    ptm_dir, hf_dir = str(tmp_path / "ptm"), str(tmp_path / "back")
    assert main(["convert", path, ptm_dir, "--to", "ptmzoo"]) == 0
    assert "ptmzoo.json" in os.listdir(ptm_dir)
    assert main(["convert", ptm_dir, hf_dir, "--to", "hf"]) == 0
    assert "BertForPreTraining" in capsys.readouterr().out
    back = transformers.AutoModelForPreTraining.from_pretrained(hf_dir).eval()
    assert type(back).__name__ == "BertForPreTraining"
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    tok, back_tok = transformers.AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(hf_dir)
    for text in SENTENCES:
        assert back_tok(text, "a pair")["input_ids"] == tok(text, "a pair")["input_ids"]
    # OUT exists: refused without --overwrite
    assert main(["convert", ptm_dir, hf_dir, "--to", "hf"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_finetuned_classifier_exports_with_labels(tmp_path):
    hf = hf_model("BertForSequenceClassification", dict(BERT_CONFIGS["bert-odd-heads"], num_labels=3))
    hf.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    hf.config.label2id = {"neg": 0, "neu": 1, "pos": 2}
    hf.save_pretrained(str(tmp_path / "cls"))
    loaded = ptmzoo.load(str(tmp_path / "cls"))
    assert loaded.task["labels"] == ["neg", "neu", "pos"]
    from ptmzoo.interop.hf import export_hf

    assert export_hf(loaded, str(tmp_path / "out")) == "BertForSequenceClassification"
    back = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out")).eval()
    assert back.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)


def _write_config(path, config):
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh)
    with open(os.path.join(path, "model.safetensors"), "wb") as fh:
        fh.write(b"\0" * 16)


def test_foreign_model_type_is_one_line_error(tmp_path):
    path = str(tmp_path / "llama")
    _write_config(path, {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    with pytest.raises(UserError, match="model_type 'llama'.*not supported; ptmzoo converts .*bert.*gpt2"):
        ptmzoo.load(path)
    result = run_cli("convert", path, str(tmp_path / "out"), "--to", "ptmzoo")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "llama" in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_unsupported_variants_are_one_line_errors(tmp_path):
    decoder = str(tmp_path / "decoder")
    _write_config(decoder, {"model_type": "bert", "is_decoder": True})
    with pytest.raises(UserError, match="is_decoder=True is not supported"):
        ptmzoo.load(decoder)
    qa = hf_model("BertForQuestionAnswering", BERT_CONFIGS["bert-small-even"])
    qa.save_pretrained(str(tmp_path / "qa"))
    with pytest.raises(UserError, match="qa_outputs.*BertForQuestionAnswering is not supported"):
        ptmzoo.load(str(tmp_path / "qa"))
    corrupt = str(tmp_path / "corrupt")
    _write_config(corrupt, {"model_type": "gpt2"})
    with pytest.raises(UserError, match="corrupt or unreadable"):
        ptmzoo.load(corrupt)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_ptmzoo_checkpoint_exports_to_transformers(family, tmp_path):
    """A ptmzoo checkpoint (own tokenizer) -> `ptmzoo convert --to hf` -> transformers Auto* classes."""
    import ptmzoo.objectives
    from ptmzoo.catalog import build_backbone
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.data.tokenizers import train_tokenizer
    from ptmzoo.models.model import PtmModel

    kind = "bpe" if family == "gpt2" else "wordpiece"
    tokenizer = train_tokenizer(iter(SENTENCES * 10), kind, 300 if kind == "bpe" else 60, min_frequency=1)
    torch.manual_seed(0)
    model = PtmModel(family, build_backbone(family, {"vocab_size": tokenizer.vocab_size, "hidden_size": 32,
                                                     "num_layers": 2, "num_heads": 2, "intermediate_size": 48}))
    model.add_head(*(("clm", HEADS["clm"]) if family == "gpt2" else ("mlm", HEADS["mlm"])))  # BERT: MLM only, pooler kept
    save_pretrained(str(tmp_path / "ptm"), perturb(model), tokenizer)
    result = run_cli("convert", str(tmp_path / "ptm"), str(tmp_path / "hf"), "--to", "hf")
    assert result.returncode == 0, result.stderr

    auto = transformers.AutoModelForCausalLM if family == "gpt2" else transformers.AutoModelForMaskedLM
    hf = auto.from_pretrained(str(tmp_path / "hf")).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    ids = [tokenizer.encode(text) for text in SENTENCES]
    assert ids == [hf_tok(text)["input_ids"] for text in SENTENCES]
    length = max(map(len, ids))
    batch = torch.tensor([row + [0] * (length - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in ids])
    with torch.no_grad():
        diff = (hf(input_ids=batch, attention_mask=mask).logits - model(batch, mask).logits).abs()
    assert diff[mask.bool()].max() <= 1e-4
    # and back: every ptmzoo tensor, the BERT pooler included, survives ptmzoo -> HF -> ptmzoo
    again = ptmzoo.load(str(tmp_path / "hf")).model.state_dict()
    assert all(torch.equal(tensor, again[key]) for key, tensor in model.state_dict().items())
