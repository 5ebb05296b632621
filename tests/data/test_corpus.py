import gzip
import json

import pytest

from ptmzoo.data.corpus import CorpusReader, sentence_starts
from ptmzoo.errors import UserError


def test_line_and_blank_documents(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("first doc\nsecond doc\n\nthird doc\n")
    assert list(CorpusReader(str(lines))) == ["first doc", "second doc", "third doc"]
    blank = tmp_path / "blank.txt"
    blank.write_text("a one\na two\n\nb one\nb two\nb three\n\n\nc one\nc two\n")
    reader = CorpusReader(str(blank))
    assert reader.doc_mode == "blank"
    assert list(reader) == ["a one\na two", "b one\nb two\nb three", "c one\nc two"]
    assert list(CorpusReader(str(blank), docs="line"))[:2] == ["a one", "a two"]


def test_jsonl_and_gzip(tmp_path):
    records = [{"text": "doc one", "id": 1}, {"text": "doc two", "id": 2}]
    plain = tmp_path / "c.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert list(CorpusReader(str(plain))) == ["doc one", "doc two"]
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(plain.read_text())
    reader = CorpusReader(str(gz))
    assert reader.compressed and reader.format == "jsonl"
    assert list(reader) == ["doc one", "doc two"]
    assert reader.bytes_read == reader.total_bytes
    text_gz = tmp_path / "t.txt.gz"
    with gzip.open(text_gz, "wt") as fh:
        fh.write("x y\nz w\n")
    assert list(CorpusReader(str(text_gz))) == ["x y", "z w"]


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "no text field"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: no field 'text' \(fields: body\)"):
        list(CorpusReader(str(path)))
    path.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        list(CorpusReader(str(path)))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        CorpusReader(str(tmp_path / "nope.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        CorpusReader(str(empty))


def test_sentence_starts():
    text = "第一句。第二句！Third one. Fourth?\nFifth"
    starts = sentence_starts(text)
    pieces = [text[a:b].strip() for a, b in zip(starts, starts[1:] + [len(text)])]
    assert pieces == ["第一句。", "第二句！", "Third one.", "Fourth?", "Fifth"]
