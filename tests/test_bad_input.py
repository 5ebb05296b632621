"""Bad input ends in one line (exit code 2 on the command line, a ValueError naming the limit in
Python), never a traceback and never a silent wrong result: zero-valued flags, JSONL nulls and
their line numbers, empty data files, a missing CUDA device, malformed flag values, swapped
tokenizer files, pickled Hugging Face weights, and token ids a model cannot take."""

from __future__ import annotations

import os
import re
import shutil

import pytest
import torch
from tests.conftest import RunsCode, assert_user_error, read_lines, run_main, shared_path

import ptmzoo
from ptmzoo.data.tokenizers import train_tokenizer
from ptmzoo.errors import UserError


def one_line_error(capsys, args: list[str], pattern: str) -> str:
    return assert_user_error(run_main(capsys, *args), pattern)


# ---- 8: zero is a value, not "not given" ---------------------------------------------------------
@pytest.mark.parametrize("flag, pattern", [("--steps", r"train.max_steps \(--steps\) must be at least 1, not 0"),
                                           ("--batch-size", r"train.batch_size \(--batch-size\) must be at least 1"),
                                           ("--lr", r"train.lr \(--lr\) must be positive, not 0.0"),
                                           ("--seq-len", r"data.seq_len \(--seq-len\) must be at least 4, not 0")])
def test_pretrain_flags_set_to_zero_are_refused(capsys, tmp_path, wiki_shards, flag, pattern):
    """`--steps 0` used to start a 1000-step run (the flag was tested for truth, not for presence)."""
    out = tmp_path / "run"
    one_line_error(capsys, ["pretrain", "--preset", "bert-tiny", "--data", wiki_shards, "--out", str(out), flag, "0"],
                   pattern)
    assert not out.exists()


@pytest.mark.parametrize("flag, pattern", [("--lr", r"--lr\) must be positive"), ("--batch-size", r"--batch-size\)"),
                                           ("--max-train-examples", "--max-train-examples must be at least 1")])
def test_finetune_flags_set_to_zero_are_refused(capsys, tmp_path, tiny_bert, flag, pattern):
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\ngood\t1\nbad\t0\n")
    one_line_error(capsys, ["finetune", "--model", tiny_bert, "--train", str(data), "--dev", str(data),
                            "--out", str(tmp_path / "run"), flag, "0"], pattern)


# ---- 9: JSONL nulls and the line of a bad record --------------------------------------------------
def test_a_null_label_is_refused_with_its_line(capsys, tmp_path, tiny_bert):
    """`"label": null` used to become a class named 'None'."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "good", "label": 1}\n\n{"text": "bad", "label": null}\n{"text": "ok", "label": 0}\n')
    one_line_error(capsys, ["finetune", "--model", tiny_bert, "--train", str(data), "--dev", str(data),
                            "--out", str(tmp_path / "run")], rf"{re.escape(str(data))}:3: 'label' is null")


def test_a_broken_jsonl_record_is_reported_at_its_own_line(capsys, tmp_path, tiny_bert):
    """An unclosed record on line 151, followed by a blank line, used to be reported at line 153,
    where the parser noticed it."""
    lines = ['{"text": "good", "label": 1}'] * 150 + ['{"text": "bad", "label": 0', ""] + ['{"text": "x", "label": 0}']
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    one_line_error(capsys, ["finetune", "--model", tiny_bert, "--train", str(data), "--dev", str(data),
                            "--out", str(tmp_path / "run")], r"train.jsonl:151: not valid JSON \(Expecting ','")


def test_a_pretty_printed_record_is_reported_where_the_error_is(tmp_path):
    from ptmzoo.tasks.tables import read_json_records

    data = tmp_path / "cluener.json"
    data.write_text('{\n  "text": "a",\n  "label": {}\n}\n{\n  "text": "b",\n  "label": {,}\n}\n')
    with pytest.raises(UserError, match=r"cluener.json:7: not valid JSON"):
        read_json_records(str(data))


# ---- 12: tracebacks that became one line -----------------------------------------------------------
@pytest.mark.parametrize("content, pattern", [("[]", "is an empty JSON list"), ("\n  \n", "holds no JSON objects")])
def test_empty_tagging_data_is_one_line(capsys, tmp_path, tiny_bert, content, pattern):
    """Tagging data `[]` or a blank JSON file used to end in an IndexError."""
    data = tmp_path / "train.json"
    data.write_text(content)
    one_line_error(capsys, ["finetune", "--task", "tagging", "--model", tiny_bert, "--train", str(data), "--dev",
                            str(data), "--out", str(tmp_path / "run")], pattern)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_without_cuda_is_one_line(capsys, tmp_path, wiki_shards):
    """`train.device=cuda` on a machine without CUDA used to end in an AssertionError."""
    one_line_error(capsys, ["pretrain", "--preset", "bert-tiny", "--data", wiki_shards, "--out", str(tmp_path / "r"),
                            "train.device=cuda"], "train.device=cuda, but this machine has no usable CUDA device")
    one_line_error(capsys, ["pretrain", "--preset", "bert-tiny", "--data", wiki_shards, "--out", str(tmp_path / "r"),
                            "train.device=gpu"], "train.device=gpu is not a device")


@pytest.mark.parametrize("budgets", ["abc", "200,,500", "0,100"])
def test_demo_budgets_that_are_not_numbers_are_one_line(capsys, tmp_path, budgets):
    """`demo --budgets abc` used to end in a ValueError."""
    one_line_error(capsys, ["demo", "--out", str(tmp_path / "demo"), "--budgets", budgets],
                   f"--budgets '{budgets}' must be comma-separated whole numbers of at least 1")
    assert not (tmp_path / "demo").exists()


def test_load_of_none_is_a_value_error():
    with pytest.raises(ValueError, match="ptmzoo.load needs the path of a checkpoint or run directory, not None"):
        ptmzoo.load(None)


def test_evaluate_names_the_model_whose_tokenizer_differs(capsys, tmp_path, wiki_shards, bpe_tokenizer):
    """`evaluate MODEL --data SHARDS` said 'a different tokenizer than None' (the path given without --model)."""
    from tests.conftest import tiny_checkpoint

    other = tiny_checkpoint(str(tmp_path / "other"), "bert", bpe_tokenizer, ("mlm",))
    err = one_line_error(capsys, ["evaluate", other, "--data", wiki_shards], "tokenized with a different tokenizer than")
    assert f"than {other};" in err and "None" not in err


def test_perplexity_of_an_encoder_says_what_it_cannot_do(capsys, tmp_path, tiny_bert):
    """It said 'this bert model cannot generate text' when asked for a perplexity."""
    text = tmp_path / "text.txt"
    text.write_text("some text to score\n")
    one_line_error(capsys, ["evaluate", tiny_bert, "--perplexity", str(text)],
                   "this bert model cannot score perplexity: it needs a decoder with a causal LM head")


# ---- 2: the tokenizer files must be the model's ----------------------------------------------------
def test_a_checkpoint_with_swapped_tokenizer_files_is_refused(capsys, tmp_path, tiny_bert):
    """Another tokenizer's files copied into a checkpoint used to load and fine-tune silently."""
    swapped = str(tmp_path / "swapped")
    shutil.copytree(tiny_bert, swapped)
    other = train_tokenizer(iter(read_lines(shared_path("en", "corpus", "lee_background.cor"))), "wordpiece", 2000)
    for name in ("tokenizer.json", "vocab.txt"):
        os.remove(os.path.join(swapped, name))
    other.save(swapped)
    with pytest.raises(UserError, match="tokenizer files in .* are not those the model was trained with"):
        ptmzoo.load(swapped)
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\ngood\t1\nbad\t0\n")
    one_line_error(capsys, ["finetune", "--model", swapped, "--train", str(data), "--dev", str(data), "--out",
                            str(tmp_path / "run")], "not those the model was trained with")
    assert ptmzoo.load(tiny_bert).tokenizer is not None  # the untouched checkpoint still loads


# ---- 1: Hugging Face weights that would run code -------------------------------------------------
def test_a_pickled_pytorch_model_bin_is_refused_in_one_line(capsys, tmp_path):
    transformers = pytest.importorskip("transformers")
    directory = tmp_path / "hf"
    directory.mkdir()
    transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, architectures=["BertModel"]).to_json_file(directory / "config.json")
    marker = str(tmp_path / "code_ran")
    torch.save({"embeddings.word_embeddings.weight": RunsCode(marker)}, directory / "pytorch_model.bin")
    one_line_error(capsys, ["convert", str(directory), str(tmp_path / "out"), "--to", "ptmzoo"],
                   "pytorch_model.bin holds more than tensors .* ptmzoo does not load it")
    assert not os.path.exists(marker)


# ---- 12: what model(ids) accepts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert():
    from ptmzoo.catalog import build_model

    model = build_model("bert", {"vocab_size": 100, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                 "intermediate_size": 64, "max_position_embeddings": 16}, heads={"mlm": {"kind": "mlm"}})
    return model.eval()


@pytest.mark.parametrize("ids, message", [
    (torch.tensor([[5, 100]]), r"holds the id 100, beyond the model's vocabulary of 100 \(ids 0..99\)"),
    (torch.tensor([[5, -1]]), r"holds the negative id -1; token ids are in \[0, 100\)"),
    (torch.ones(1, 17, dtype=torch.long), r"input of 17 tokens is longer than the model's 16 positions"),
    (torch.zeros(1, 0, dtype=torch.long), r"shape \(1, 0\).*at least one token"),
    ([[5, 6, 7]], r"input_ids must be a torch.Tensor of token ids, not a list; wrap the ids"),
    (torch.tensor([[1.0, 2.0]]), "must hold integer token ids, not torch.float32"),
])
def test_model_inputs_outside_the_limits_are_value_errors(bert, ids, message):
    with pytest.raises(ValueError, match=message):
        bert(ids)


def test_inputs_at_the_limits_and_relative_positions_have_no_length_limit(bert):
    with torch.no_grad():
        assert bert(torch.tensor([[0, 99] * 8])).logits.shape == (1, 16, 100)
        from ptmzoo.catalog import build_model

        t5 = build_model("t5", {"vocab_size": 50, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "head_dim": 8,
                                "intermediate_size": 32}).eval()
        longer = torch.randint(0, 50, (1, t5.config.max_position_embeddings + 88))
        assert t5(longer).last_hidden_state.shape[0] == 1  # T5's buckets: no position table to run past
        with pytest.raises(ValueError, match="beyond the model's vocabulary of 50"):
            t5(torch.tensor([[50]]))
