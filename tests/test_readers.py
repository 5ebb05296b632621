"""Readers of user files: ``--encoding`` (GBK, GB18030, Latin-1) on every verb that reads text,
TSV rows with more fields than the header (``--keep-columns``), a headerless file's error that
suggests ``--columns``, and CoNLL tokens with a position suffix (Weibo NER's ``科0``)."""

from __future__ import annotations

import json
import os

import pytest

from ptmzoo.cli import main
from ptmzoo.errors import UserError
from ptmzoo.tasks import TaggingOptions
from ptmzoo.tasks.tables import read_table, reading
from ptmzoo.tasks.tagging import read_conll, read_tagged
from ptmzoo.textio import check_encoding, current_encoding, read_text, reading_encoding
from tests.conftest import assert_user_error, run_main, shared_path

CHINESE = ["今天天气很好", "适合出去走走", "北京欢迎你"]
FRENCH = ["déjà vu", "garçon", "Noël à Paris"]


# ---- encodings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding, texts", [("gbk", CHINESE), ("gb18030", CHINESE), ("latin-1", FRENCH),
                                             ("cp1252", FRENCH)])
def test_a_table_in_another_encoding_reads_with_its_encoding(tmp_path, encoding, texts):
    path = tmp_path / "train.tsv"
    path.write_bytes(("text\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts))).encode(encoding))
    with pytest.raises(UserError, match=r"train.tsv:2: not UTF-8 text .*pass --encoding"):
        read_table(str(path))
    with reading(encoding):
        rows = read_table(str(path))
    assert [r["text"] for r in rows] == texts and rows[0].line == 2
    assert current_encoding() == "utf-8"  # the block ended


def test_the_error_guesses_gb18030_for_chinese_and_latin1_otherwise(tmp_path):
    (tmp_path / "zh.txt").write_bytes("今天天气很好\n".encode("gbk"))
    (tmp_path / "fr.txt").write_bytes("déjà vu\n".encode("latin-1"))
    with pytest.raises(UserError, match="pass --encoding gb18030"):
        read_text(tmp_path / "zh.txt")
    with pytest.raises(UserError, match="pass --encoding latin-1"):
        read_text(tmp_path / "fr.txt")


def test_a_wrong_encoding_names_itself_and_unknown_ones_are_refused(tmp_path):
    (tmp_path / "a.txt").write_bytes("今天".encode() + b"\xff\xff\n")  # not GBK either
    with reading_encoding("gbk"), pytest.raises(UserError, match=r"a.txt:1: not GBK text .*--encoding"):
        read_text(tmp_path / "a.txt")
    with pytest.raises(UserError, match="unknown text encoding 'klingon'"):
        check_encoding("klingon")
    with pytest.raises(UserError, match="UTF-16.*convert the file to UTF-8"):
        check_encoding("utf-16")
    assert read_text(tmp_path / "a.txt", encoding="latin-1").startswith("ä»")  # explicit beats the context


def test_own_files_stay_utf8_inside_another_encoding(tmp_path, wordpiece_tokenizer):
    """--encoding is for the user's files: a checkpoint's ptmzoo.json and vocab.txt are UTF-8."""
    from ptmzoo.data.tokenizers import Tokenizer
    from ptmzoo.io import read_json

    (tmp_path / "meta.json").write_text(json.dumps({"name": "北京"}, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n北\n", encoding="utf-8")
    with reading_encoding("latin-1"):
        assert read_json(str(tmp_path / "meta.json")) == {"name": "北京"}
        assert "北" in Tokenizer.load(str(tmp_path / "vocab.txt")).backend.get_vocab()


def test_corpus_verbs_read_gbk_with_encoding(tmp_path, capsys, wordpiece_tokenizer):
    """`prepare` and `tokenizer train` (CorpusReader), and `vectors train` (its line corpus)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(("\n".join(CHINESE * 20) + "\n").encode("gbk"))
    tok = str(tmp_path / "tok")
    wordpiece_tokenizer.save(tok)
    assert_user_error(run_main(capsys, "prepare", "--input", str(corpus), "--tokenizer", tok, "--out",
                               str(tmp_path / "s0"), "--no-progress"), "not UTF-8 text.*--encoding gb18030")
    assert main(["prepare", "--input", str(corpus), "--tokenizer", tok, "--out", str(tmp_path / "s"),
                 "--no-progress", "--workers", "1", "--encoding", "gbk"]) == 0
    assert main(["tokenizer", "train", "--input", str(corpus), "--kind", "char", "--vocab-size", "30",
                 "--min-frequency", "1", "--out", str(tmp_path / "t"), "--encoding", "gbk"]) == 0
    vocab = json.loads((tmp_path / "t" / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert "京" in vocab
    assert main(["vectors", "train", "--method", "word2vec", "--input", str(corpus), "--out", str(tmp_path / "v"),
                 "--segment", "chars", "--min-count", "1", "--epochs", "1", "--dim", "8", "--no-progress",
                 "--encoding", "gbk"]) == 0
    words = [line.split()[0] for line in (tmp_path / "v" / "vectors.txt").read_text(encoding="utf-8").splitlines()[1:]]
    assert set("".join(CHINESE)) == set(words)  # every character of the GBK corpus, decoded


def test_generate_reads_a_gbk_prompt_file(tmp_path, capsys, tiny_gpt2):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("Noël à Paris\n".encode("latin-1"))
    assert_user_error(run_main(capsys, "generate", tiny_gpt2, "--prompt-file", str(prompts)),
                      "prompts.txt:1: not UTF-8 text.*--encoding latin-1")
    assert main(["generate", tiny_gpt2, "--prompt-file", str(prompts), "--max-new-tokens", "2",
                 "--encoding", "latin-1", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("Noël à Paris")


# ---- more fields than the header ---------------------------------------------------------------
STSB = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
        "1\tmain-forums\tdeft-forum\t2014\t0002\tnone\tnone\tIt is.\tIt is not.\t1.200\tdeft-forum\tsrc-7\n"
        "2\tmain-news\theadlines\t2013\t0003\tnone\tnone\tA man plays.\tA man is playing.\t4.000\n")


def test_rows_with_extra_fields_fail_naming_keep_columns(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(STSB, encoding="utf-8")
    with pytest.raises(UserError, match=r"train.tsv:3: expected 10 TSV fields \(index, .*\), found 12; to read such "
                                        r"rows, name the columns to keep with --keep-columns"):
        read_table(str(path))


def test_keep_columns_reads_the_named_columns_and_drops_the_extra_fields(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(STSB, encoding="utf-8")
    with reading(keep_columns=["sentence1", "sentence2", "score"]):
        rows = read_table(str(path))
    assert [dict(r) for r in rows] == [
        {"sentence1": "A plane is taking off.", "sentence2": "An air plane is taking off.", "score": "5.000"},
        {"sentence1": "It is.", "sentence2": "It is not.", "score": "1.200"},
        {"sentence1": "A man plays.", "sentence2": "A man is playing.", "score": "4.000"}]
    assert [r.line for r in rows] == [2, 3, 4]
    with reading(keep_columns=["sentence1", "similarity"]), pytest.raises(UserError, match="no column 'similarity'"):
        read_table(str(path))


def test_keep_columns_on_the_command_line_fine_tunes_a_regression(tmp_path, tiny_bert):
    path = tmp_path / "train.tsv"
    path.write_text(STSB.splitlines(keepends=True)[0] + "".join(STSB.splitlines(keepends=True)[1:]) * 4,
                    encoding="utf-8")
    out = str(tmp_path / "run")
    assert main(["finetune", "--model", tiny_bert, "--task", "regression", "--train", str(path), "--dev", str(path),
                 "--out", out, "--text-column", "sentence1", "--text-pair-column", "sentence2",
                 "--label-column", "score", "--keep-columns", "sentence1,sentence2,score", "--epochs", "1",
                 "--no-progress"]) == 0
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as fh:
        assert json.load(fh)["train_examples"] == 12


# ---- files without a header --------------------------------------------------------------------
def test_a_headerless_file_suggests_columns(tmp_path, capsys, tiny_bert):
    """AFQMC ships `s1<TAB>s2<TAB>label` with no header: the first pair became the column names."""
    source = shared_path("zh", "afqmc", "dev.txt")
    with open(source, encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(12)]
    data = tmp_path / "afqmc.tsv"
    data.write_text("".join(lines), encoding="utf-8")
    line = assert_user_error(
        run_main(capsys, "finetune", "--model", tiny_bert, "--train", str(data), "--dev", str(data), "--out",
                 str(tmp_path / "run"), "--text-pair-column", "text_pair"),
        r"column 'label' not found in afqmc.tsv \(columns: .*\); the file seems to have no header row; name its 3 "
        r"columns with --columns text,text_pair,label")
    assert "--text-column" in line
    rows = read_table(str(data), columns=["text", "text_pair", "label"])  # the suggestion works
    assert len(rows) == 12 and rows[0]["label"] in ("0", "1")


def test_a_header_is_not_mistaken_for_data(tmp_path):
    from ptmzoo.tasks.tables import require_columns

    path = tmp_path / "d.tsv"
    path.write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"column 'text' not found in d.tsv \(columns: sentence, label\); choose it "
                                        r"with --text-column$"):
        require_columns(read_table(str(path)), str(path), {"text_column": "text"})


def test_a_headerless_tagging_table_suggests_columns(tmp_path):
    path = tmp_path / "ner.tsv"
    path.write_text("海 钓 比 赛 地 点 在 厦 门\tO O O O O O O B-LOC I-LOC\n在 北 京\tO B-LOC I-LOC\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"no 'tokens' column; the file seems to have no header row; name its 2 "
                                        r"columns with --columns tokens,tags"):
        read_tagged(str(path), TaggingOptions())


def test_a_short_row_of_a_headerless_file_says_so(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("这是第一句话，它很长很长很长\t1\n短\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"d.tsv:2: expected 2 TSV fields .*found 1; the first row looks like data"):
        read_table(str(path))


# ---- CoNLL tokens with a position suffix ------------------------------------------------------
WEIBO = "科0\tB-ORG.NAM\n技1\tI-ORG.NAM\n全0\tO\n方1\tO\n位2\tO\n\n在0\tO\n北0\tB-GPE.NAM\n京1\tI-GPE.NAM\n"


def test_a_position_suffix_is_detected_in_one_line(tmp_path):
    path = tmp_path / "weiboNER.conll"
    path.write_text(WEIBO, encoding="utf-8")
    with pytest.raises(UserError, match=r"weiboNER.conll:1: 100% of the tokens are one character and a digit "
                                        r"\(科0 技1 全0 ...\): a position suffix, as in Weibo NER.*"
                                        r"--strip-position-suffix"):
        read_conll(str(path))


def test_strip_position_suffix_reads_the_characters(tmp_path, capsys, tiny_bert):
    path = tmp_path / "weiboNER.conll"
    path.write_text(WEIBO, encoding="utf-8")
    rows = read_tagged(str(path), TaggingOptions(strip_position_suffix=True))
    assert [r["tokens"] for r in rows] == [["科", "技", "全", "方", "位"], ["在", "北", "京"]]
    assert rows[1]["tags"] == ["O", "B-GPE.NAM", "I-GPE.NAM"]
    assert_user_error(run_main(capsys, "finetune", "--task", "tagging", "--model", tiny_bert, "--train", str(path),
                               "--dev", str(path), "--out", str(tmp_path / "r")), "position suffix")
    assert main(["finetune", "--task", "tagging", "--model", tiny_bert, "--train", str(path), "--dev", str(path),
                 "--out", str(tmp_path / "run"), "--strip-position-suffix", "--epochs", "1", "--no-progress"]) == 0


def test_english_conll_and_numbers_are_not_position_suffixes(tmp_path):
    rows = read_conll(shared_path("en", "conll2003", "dev.txt"))
    assert len(rows) > 3000
    path = tmp_path / "n.txt"
    path.write_text("a1 O\nb2 O\nc3 O\nword O\nmore O\nthan O\nten O\nwords O\nhere O\nnow O\n", encoding="utf-8")
    assert read_conll(str(path))[0]["tokens"][0] == "a1"  # 30% suffixed: not the format


def test_every_kind_of_user_file_reads_in_the_encoding_in_effect(tmp_path):
    """The readers behind finetune (CoNLL, SQuAD JSON, JSONL), transe, prepare --entities and
    evaluate --perplexity, on files written in GBK."""
    from ptmzoo.knowledge.transe import read_triples
    from ptmzoo.tasks.qa import read_squad
    from ptmzoo.tasks.tables import read_json_records
    from ptmzoo.vectors.formats import read_vectors

    files = {"ner.conll": "北 B-LOC\n京 I-LOC\n", "kg.tsv": "北京\t首都\t中国\n", "e.vec": "1 2\n北京 0.5 0.25\n",
             "rows.jsonl": json.dumps({"text": "北京"}, ensure_ascii=False) + "\n",
             "squad.json": json.dumps({"data": [{"paragraphs": [{"context": "北京是首都", "qas": [
                 {"id": "1", "question": "首都?", "answers": [{"text": "北京", "answer_start": 0}]}]}]}]},
                 ensure_ascii=False)}
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode("gbk"))
    with reading("gbk"):
        assert read_conll(str(tmp_path / "ner.conll"))[0]["tokens"] == ["北", "京"]
        assert read_triples(str(tmp_path / "kg.tsv")).entities == ["北京", "中国"]
        assert read_vectors(str(tmp_path / "e.vec"))[0] == ["北京"]
        assert read_json_records(str(tmp_path / "rows.jsonl"))[0]["text"] == "北京"
        assert read_squad(str(tmp_path / "squad.json"))[0]["context"] == "北京是首都"
        assert read_text(tmp_path / "kg.tsv") == "北京\t首都\t中国\n"
    for name in files:
        with pytest.raises(UserError, match="not UTF-8 text"):
            read_text(tmp_path / name)
