"""`ptmzoo vectors train | eval | neighbors` as users run them, and one clear line (exit code 2)
for each mistake."""

import gzip
import json
import os

import pytest

from ptmzoo.cli import main
from tests.conftest import run_cli, shared_path
from tests.vectors.helpers import topic_corpus


def _error(capsys, *argv) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vectors")
    corpus = topic_corpus(root / "corpus.txt", sentences=600)
    out = str(root / "out")
    result = run_cli("vectors", "train", "--method", "fasttext", "--input", corpus, "--out", out, "--arch",
                     "skipgram", "--dim", "16", "--min-count", "1", "--bucket", "5000", "--workers", "1",
                     "--no-progress", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "fasttext (skipgram, ns): 24 words x 16 from 4,800 corpus words" in result.stdout
    return root, corpus, out


def test_train_writes_both_formats_settings_and_ngrams(trained):
    _, _, out = trained
    assert sorted(os.listdir(out)) == ["ngrams.npz", "vectors.bin", "vectors.json", "vectors.txt"]
    meta = json.load(open(os.path.join(out, "vectors.json")))
    assert meta["method"] == "fasttext" and meta["settings"]["arch"] == "skipgram"
    assert meta["settings"]["window"] == 5 and meta["vocabulary"]["words"] == 24  # the defaults it used
    assert open(os.path.join(out, "vectors.txt")).readline() == "24 16\n"


def test_eval_and_neighbors(trained, tmp_path):
    root, _, out = trained
    analogy = tmp_path / "analogy.txt"
    analogy.write_text(": topics\ncat dog red green\nUnknownWord dog red green\n")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# w1 w2 score\ncat\tdog\t9\ncat\tred\t1\nred\tblue\t8\nnope\tcat\t3\n")
    result = run_cli("vectors", "eval", out, "--analogy", str(analogy), "--similarity", str(pairs), "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["analogy"][0]["answered"] == 1 and scores["analogy"][0]["skipped"] == 1
    assert scores["similarity"][0]["pairs"] == 3 and scores["similarity"][0]["skipped"] == 1
    result = run_cli("vectors", "neighbors", out, "cat", "catz", "--topn", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cat: ") and len(lines[0].split(", ")) == 3
    assert lines[1].startswith("catz (not in the vocabulary: from its character n-grams): ")


def test_overwrite_replaces_only_its_own_files(trained, capsys):
    root, corpus, out = trained
    err = _error(capsys, "vectors", "train", "--method", "word2vec", "--input", corpus, "--out", out)
    assert "exists and is not empty" in err and "--overwrite" in err
    foreign = os.path.join(out, "notes.txt")
    open(foreign, "w").write("mine")
    assert main(["vectors", "train", "--method", "word2vec", "--input", corpus, "--out", out, "--overwrite",
                 "--min-count", "1", "--dim", "8", "--no-progress", "--workers", "1"]) == 0
    assert sorted(os.listdir(out)) == ["notes.txt", "vectors.bin", "vectors.json", "vectors.txt"]  # ngrams gone
    assert open(foreign).read() == "mine"
    err = _error(capsys, "vectors", "neighbors", out, "catz")
    assert "'catz' is not in the vocabulary (24 words)" in err


def test_mistakes_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "out")
    train = ["vectors", "train", "--method", "word2vec", "--out", out, "--no-progress", "--input"]
    assert "corpus file not found" in _error(capsys, *train, str(tmp_path / "missing.txt"))
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    assert "holds no words" in _error(capsys, *train, str(tmp_path / "blank.txt"))
    (tmp_path / "few.txt").write_text("a b c\n")
    assert "occurs --min-count 5 times" in _error(capsys, *train, str(tmp_path / "few.txt"))
    (tmp_path / "gbk.txt").write_bytes("first line\nsecond\n".encode() + "中文 文本\n".encode("gbk"))
    assert "gbk.txt:3: not UTF-8" in _error(capsys, *train, str(tmp_path / "gbk.txt"))
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    assert "cannot be read" in _error(capsys, *train, str(tmp_path / "bad.gz"))
    few = str(tmp_path / "few.txt")
    assert "--x-max does not apply to --method word2vec" in _error(capsys, *train, few, "--x-max", "10")
    assert "--arch does not apply to --method glove" in _error(
        capsys, "vectors", "train", "--method", "glove", "--input", few, "--out", out, "--arch", "cbow")
    assert "--window must be at least 1" in _error(capsys, *train, few, "--window", "0")
    assert not os.path.exists(out)
    assert "vectors not found" in _error(capsys, "vectors", "eval", str(tmp_path / "none"), "--similarity", few)
    assert "give --analogy" in _error(capsys, "vectors", "eval", str(tmp_path))
    assert "holds no vectors.bin or vectors.txt" in _error(capsys, "vectors", "neighbors", str(tmp_path), "x")


def test_gzip_lowercase_and_chinese_segmentation(tmp_path):
    from ptmzoo.vectors.corpus import LineCorpus

    path = tmp_path / "c.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("The CAT sat\n北京 大学\n")
    assert list(LineCorpus(str(path), lowercase=True)) == [["the", "cat", "sat"], ["北京", "大学"]]
    plain = tmp_path / "zh.txt"
    plain.write_text("我爱北京天安门\n")
    assert list(LineCorpus(str(plain), segment="chars")) == [list("我爱北京天安门")]
    pytest.importorskip("jieba")
    words = list(LineCorpus(str(plain), segment="jieba"))[0]
    assert "".join(words) == "我爱北京天安门" and "北京" in words


def test_chinese_text_trains_with_jieba(tmp_path):
    pytest.importorskip("jieba")
    lines = open(shared_path("zh", "corpus", "clue_small_sampled.txt"), encoding="utf-8").readlines()[:200]
    corpus = tmp_path / "zh.txt"
    corpus.write_text("".join(lines), encoding="utf-8")
    out = str(tmp_path / "out")
    assert main(["vectors", "train", "--method", "word2vec", "--input", str(corpus), "--out", out, "--segment",
                 "jieba", "--dim", "8", "--epochs", "1", "--no-progress", "--workers", "1"]) == 0
    words = [line.split()[0] for line in open(os.path.join(out, "vectors.txt"), encoding="utf-8")][1:]
    assert any(len(w) > 1 and all("\u4e00" <= c <= "\u9fff" for c in w) for w in words)  # segmented words
