"""Every text reader: a GBK file gives the same one line (file, line, byte, how to convert) instead
of a UnicodeDecodeError traceback, and a UTF-8 byte-order mark never becomes part of the data."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import assert_user_error, run_main, shared_path

from ptmzoo.cli import main
from ptmzoo.errors import UserError

CHINESE = "今天天气很好，适合出去走走"
BOM = "\ufeff"
NOT_UTF8 = r"{path}:{line}: not UTF-8 text \(byte {byte}: invalid (start|continuation) byte\); pass --encoding " \
           r"gb18030 \(or the file's own encoding\), or convert the file to UTF-8, e.g. `iconv -f GBK -t UTF-8"


def gbk_file(path, lines: list[str], bad_line: int) -> tuple[str, int]:
    """``lines`` as UTF-8, except line ``bad_line`` (1-based) in GBK; returns the path and the
    byte offset of the first byte that is not UTF-8."""
    data = b"".join(line.encode("gbk" if number == bad_line else "utf-8") + b"\n"
                    for number, line in enumerate(lines, start=1))
    path.write_bytes(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return str(path), exc.start
    raise AssertionError("the GBK line decodes as UTF-8")


def expect_not_utf8(capsys, args, path, line, byte):
    assert_user_error(run_main(capsys, *args), NOT_UTF8.format(path=re.escape(path), line=line, byte=byte))


# reader: (its lines with the GBK one, which line is GBK, the command line given the file)
def _squad(text):
    return json.dumps({"data": [{"paragraphs": [{"context": text, "qas": []}]}]}, ensure_ascii=False, indent=1)


READERS = {
    "evaluate --perplexity": (["a first line", CHINESE, "more"], 2,
                              lambda f, m: ["evaluate", m["gpt2"], "--perplexity", f]),
    "generate --prompt-file": (["Once upon a time", "", CHINESE], 3, lambda f, m: ["generate", m["gpt2"], "--prompt-file", f]),
    "transe --triples": (["a\tr\tb", f"{CHINESE}\tr\tb"], 2, lambda f, m: ["transe", "--triples", f, "--out", f + ".vec"]),
    "prepare --entities": (["2 2", "a 0.1 0.2", f"{CHINESE} 0.3 0.4"], 3,
                           lambda f, m: ["prepare", "--input", m["corpus"], "--tokenizer", m["bert"], "--out",
                                         f + ".shards", "--entities", f, "--no-progress"]),
    "qa json": (_squad(CHINESE).splitlines(), 6, lambda f, m: ["finetune", "--task", "qa", "--model", m["bert"],
                                                               "--train", f, "--dev", f, "--out", f + ".run"]),
    "conll": (["EU B-ORG", "rejects O", "", f"{CHINESE} O"], 4,
              lambda f, m: ["finetune", "--task", "tagging", "--model", m["bert"], "--train", f, "--dev", f,
                            "--out", f + ".run", "--format", "conll"]),
    "tsv": (["text\tlabel", "good\t1", f"{CHINESE}\t0"], 3,
            lambda f, m: ["finetune", "--model", m["bert"], "--train", f, "--dev", f, "--out", f + ".run"]),
    "--recipe": (["preset: bert-tiny", f"# {CHINESE}"], 2, lambda f, m: ["pretrain", "--recipe", f, "--out", f + ".run"]),
    "vocab.txt": (["[PAD]", "[UNK]", CHINESE], 3, lambda f, m: ["tokenizer", "encode", "--tokenizer", f, "x"]),
    "prepare --input": (["line one", CHINESE], 2, lambda f, m: ["prepare", "--input", f, "--tokenizer", m["bert"],
                                                                "--out", f + ".shards", "--no-progress"]),
}


@pytest.fixture
def models(tiny_bert, tiny_gpt2, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b\nb a\n")
    return {"bert": tiny_bert, "gpt2": tiny_gpt2, "corpus": str(corpus)}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_gbk_file_is_one_clear_line_in_every_reader(capsys, tmp_path, models, reader):
    lines, bad_line, args = READERS[reader]
    name = {"vocab.txt": "vocab.txt", "conll": "train.conll", "tsv": "train.tsv", "qa json": "train.json",
            "--recipe": "recipe.yaml"}.get(reader, "input.txt")
    path, byte = gbk_file(tmp_path / name, lines, bad_line)
    expect_not_utf8(capsys, args(path, models), path, bad_line, byte)


def test_label_names_file_in_gbk_is_one_clear_line(tmp_path):
    from ptmzoo.tasks.text2text import label_name_map

    path, byte = gbk_file(tmp_path / "labels.txt", ["negative", CHINESE], 2)
    with pytest.raises(UserError, match=NOT_UTF8.format(path=re.escape(path), line=2, byte=byte)):
        label_name_map(path, ["0", "1"])


def test_a_gzip_corpus_names_the_line_and_byte_of_the_decompressed_text(tmp_path, capsys, tiny_bert):
    import gzip

    raw = b"first line\nsecond\n" + CHINESE.encode("gbk") + b"\n"
    path = str(tmp_path / "corpus.txt.gz")
    with gzip.open(path, "wb") as fh:
        fh.write(raw)
    expect_not_utf8(capsys, ["prepare", "--input", path, "--tokenizer", tiny_bert, "--out", str(tmp_path / "s"),
                             "--no-progress"],
                    path, 3, len("first line\nsecond\n"))


# ---- byte-order marks ------------------------------------------------------------------------------
def _prepare(tokenizer_dir, corpus, out) -> np.ndarray:
    assert main(["prepare", "--input", str(corpus), "--tokenizer", tokenizer_dir, "--out", str(out), "--no-progress",
                 "--valid-fraction", "0", "--workers", "1"]) == 0
    return np.fromfile(os.path.join(out, "train", "00000.bin"), dtype=np.uint16)


@pytest.mark.parametrize("kind", ["text", "jsonl"])
def test_prepare_drops_a_bom(tmp_path, char_tokenizer, kind):
    """`prepare` used to keep the BOM as a token of the first document (a character tokenizer
    makes it one), and refused a JSONL file that starts with one."""
    tok = str(tmp_path / "tok")
    char_tokenizer.save(tok)
    lines = Path(shared_path("zh", "corpus", "clue_small_sampled.txt")).read_text(encoding="utf-8").splitlines()[:3]
    if kind == "jsonl":
        lines = [json.dumps({"text": line}, ensure_ascii=False) for line in lines]
    text = "\n".join(lines) + "\n"
    suffix = ".jsonl" if kind == "jsonl" else ".txt"
    (tmp_path / f"plain{suffix}").write_text(text, encoding="utf-8")
    (tmp_path / f"bom{suffix}").write_text(BOM + text, encoding="utf-8")
    plain = _prepare(tok, tmp_path / f"plain{suffix}", tmp_path / "plain")
    with_bom = _prepare(tok, tmp_path / f"bom{suffix}", tmp_path / "bom")
    np.testing.assert_array_equal(plain, with_bom)


def test_other_readers_drop_a_bom(tmp_path):
    from ptmzoo.config import load_yaml
    from ptmzoo.data.tokenizers import Tokenizer
    from ptmzoo.knowledge.transe import read_triples
    from ptmzoo.knowledge.vectors import read_vectors
    from ptmzoo.tasks.tagging import read_conll

    (tmp_path / "vocab.txt").write_text(BOM + "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n", encoding="utf-8")
    assert Tokenizer.load(str(tmp_path / "vocab.txt")).pad_id == 0  # not '\ufeff[PAD]'
    (tmp_path / "recipe.yaml").write_text(BOM + "preset: bert-tiny\n", encoding="utf-8")
    assert load_yaml(str(tmp_path / "recipe.yaml")) == {"preset": "bert-tiny"}
    (tmp_path / "kg.tsv").write_text(BOM + "Paris\tcapital_of\tFrance\n", encoding="utf-8")
    assert read_triples(str(tmp_path / "kg.tsv")).entities == ["Paris", "France"]
    (tmp_path / "e.vec").write_text(BOM + "1 2\nParis 0.5 0.25\n", encoding="utf-8")
    assert read_vectors(str(tmp_path / "e.vec"))[0] == ["Paris"]
    (tmp_path / "ner.txt").write_text(BOM + "EU B-ORG\nrejects O\n", encoding="utf-8")
    assert read_conll(str(tmp_path / "ner.txt"))[0]["tokens"] == ["EU", "rejects"]
