"""Corpus readers: plain text and JSONL, optionally gzip-compressed, streamed document by document.

Plain text holds one document per line, or documents separated by blank lines (the lines of a
document are kept, joined by newlines). ``docs="auto"`` looks at the start of the file: when it
has blank lines and the blocks between them average two or more lines, blank lines separate
documents; otherwise each line is a document. JSONL takes the text of one named field per line.
Nothing is read ahead beyond one line, so corpora larger than memory stream through.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator

from ..errors import UserError, require_file
from ..textio import BOM, current_encoding, decode_line

FORMATS = ("auto", "text", "jsonl")
DOC_MODES = ("auto", "line", "blank")
_SNIFF_BYTES = 1 << 20


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class CorpusReader:
    """Iterate over the documents of one file; ``bytes_read`` tracks progress on disk."""

    def __init__(self, path: str, fmt: str = "auto", field: str = "text", docs: str = "auto",
                 encoding: str | None = None):
        self.path = require_file(path, "corpus file")
        self.encoding = encoding or current_encoding()  # (--encoding) fixed here: workers do not see the context
        if fmt not in FORMATS:
            raise UserError(f"unknown corpus format '{fmt}' (choose from {', '.join(FORMATS)})")
        if docs not in DOC_MODES:
            raise UserError(f"unknown document mode '{docs}' (choose from {', '.join(DOC_MODES)})")
        self.compressed = _is_gzip(self.path)
        self.total_bytes = os.path.getsize(self.path)
        self.bytes_read = 0
        self.field = field
        head = self._head_lines()
        self.format = fmt if fmt != "auto" else self._sniff_format(head)
        self.doc_mode = "line" if self.format == "jsonl" else (docs if docs != "auto" else _sniff_doc_mode(head))

    # -- opening and sniffing ------------------------------------------------------------------
    def _open(self):
        raw = open(self.path, "rb")
        stream = gzip.GzipFile(fileobj=raw) if self.compressed else raw
        return raw, stream

    def _head_lines(self) -> list[str]:
        raw, stream = self._open()
        try:
            data = stream.read(_SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            raise UserError(f"cannot read {self.path}: {exc} (is the gzip file complete?)")
        finally:
            raw.close()
        text = data.removeprefix(BOM).decode(self.encoding, errors="ignore")
        lines = text.splitlines()
        return lines[:-1] if len(data) == _SNIFF_BYTES and len(lines) > 1 else lines

    def _sniff_format(self, head: list[str]) -> str:
        name = self.path.removesuffix(".gz")
        if name.endswith((".jsonl", ".json", ".ndjson")):
            return "jsonl"
        first = next((line for line in head if line.strip()), "")
        if first.lstrip().startswith("{"):
            try:
                json.loads(first)
                return "jsonl"
            except json.JSONDecodeError:
                pass
        return "text"

    # -- iteration -------------------------------------------------------------------------------
    def _lines(self) -> Iterator[tuple[int, str]]:
        raw, stream = self._open()
        offset = 0  # of the line in the (decompressed) text, for the error on a non-UTF-8 byte
        try:
            for number, chunk in enumerate(stream, start=1):
                self.bytes_read = raw.tell()
                yield number, decode_line(chunk, self.path, number, offset, self.encoding)
                offset += len(chunk)
        except (OSError, EOFError) as exc:
            raise UserError(f"cannot read {self.path}: {exc} (is the gzip file complete?)") from None
        finally:
            self.bytes_read = self.total_bytes
            raw.close()

    def __iter__(self) -> Iterator[str]:
        if self.format == "jsonl":
            yield from self._jsonl_documents()
        elif self.doc_mode == "blank":
            yield from self._blank_separated_documents()
        else:
            for _, line in self._lines():
                line = line.strip()
                if line:
                    yield line

    def _blank_separated_documents(self) -> Iterator[str]:
        block: list[str] = []
        for _, line in self._lines():
            line = line.rstrip("\r\n")
            if line.strip():
                block.append(line.strip())
            elif block:
                yield "\n".join(block)
                block = []
        if block:
            yield "\n".join(block)

    def _jsonl_documents(self) -> Iterator[str]:
        for number, line in self._lines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{self.path}:{number}: not valid JSON ({exc.msg}); JSONL needs one object per line"
                ) from None
            if not isinstance(record, dict):
                raise UserError(f"{self.path}:{number}: expected a JSON object, got {type(record).__name__}")
            if self.field not in record:
                fields = ", ".join(record) or "none"
                raise UserError(
                    f"{self.path}:{number}: no field '{self.field}' (fields: {fields}); choose one with --field"
                )
            text = record[self.field]
            if not isinstance(text, str):
                raise UserError(f"{self.path}:{number}: field '{self.field}' is not a string")
            text = text.strip()
            if text:
                yield text


def _sniff_doc_mode(head: list[str]) -> str:
    blocks: list[int] = []
    current = 0
    for line in head:
        if line.strip():
            current += 1
        elif current:
            blocks.append(current)
            current = 0
    if current:
        blocks.append(current)
    if len(blocks) > 1 and sum(blocks) / len(blocks) >= 2:
        return "blank"
    return "line"


def iter_documents(paths: list[str], fmt: str = "auto", field: str = "text", docs: str = "auto") -> Iterator[str]:
    for path in paths:
        yield from CorpusReader(path, fmt, field, docs)


# Sentence ends: line breaks, CJK and Latin terminal punctuation (with closing quotes), or a period
# followed by whitespace. Used to record sentence boundaries for next-sentence prediction.
SENTENCE_END = re.compile(r"\n+|[。！？!?…]+[”’」』\"')）]*|\.(?=\s)")


def sentence_starts(text: str) -> list[int]:
    """Character offsets where sentences start (always including 0)."""
    starts = [0]
    for match in SENTENCE_END.finditer(text):
        end = match.end()
        while end < len(text) and text[end].isspace():
            end += 1
        if starts[-1] < end < len(text):
            starts.append(end)
    return starts

