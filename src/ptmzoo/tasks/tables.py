"""Labelled data files: TSV, CSV, JSONL (or a JSON list) with named columns.

TSV and CSV have a header row unless column names are given (``columns=["s1", "s2", "label"]``
for a file without a header, such as AFQMC). TSV is read without quote handling -- sentences in
TSV corpora contain bare quotes. Malformed rows fail with file, line and what was expected.
"""

from __future__ import annotations

import csv
import json
import os
import re

from ..errors import UserError, require_file
from ..textio import open_text, read_text

TABLE_FORMATS = ("auto", "tsv", "csv", "jsonl")


class Row(dict):
    """A data row (column -> value) that knows the line of the file it was read from."""

    line: int | None = None


def _row(values, line: int | None) -> Row:
    row = Row(values)
    row.line = line
    return row


def row_location(path: str, row: dict, number: int) -> str:
    """``file:line`` of a row when known (a JSON list has no lines), else ``file: row N``."""
    line = getattr(row, "line", None)
    return f"{path}:{line}" if line else f"{path}: row {number}"


def detect_format(path: str) -> str:
    name = path.lower()
    for ext, fmt in ((".tsv", "tsv"), (".csv", "csv"), (".jsonl", "jsonl"), (".json", "jsonl"), (".txt", "tsv")):
        if name.endswith(ext):
            return fmt
    raise UserError(f"cannot tell the format of {path} from its extension; pass --format tsv|csv|jsonl")


def read_table(path: str, fmt: str = "auto", columns: list[str] | None = None) -> list[dict[str, str]]:
    """Rows as dicts of column name -> value (strings for TSV/CSV)."""
    require_file(path, "data file")
    if fmt not in TABLE_FORMATS:
        raise UserError(f"unknown data format '{fmt}' (choose from {', '.join(TABLE_FORMATS)})")
    fmt = detect_format(path) if fmt == "auto" else fmt
    rows = _read_json_rows(path) if fmt == "jsonl" else _read_delimited(path, fmt, columns)
    if not rows:
        raise UserError(f"{path} has no data rows")
    return rows


def _read_delimited(path: str, fmt: str, columns: list[str] | None) -> list[dict[str, str]]:
    delimiter = "\t" if fmt == "tsv" else ","
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    with open_text(path) as fh:  # lines keep their ends, as csv wants (newline="")
        reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
        header = columns
        if header is None:
            header = next(reader, None)
            if header is None:
                return []
            header = [h.strip() for h in header]
            if len(set(header)) != len(header):
                raise UserError(f"{path}:1: repeated column names in the header {header}")
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise UserError(f"{path}:{reader.line_num}: expected {len(header)} {fmt.upper()} fields "
                                f"({', '.join(header)}), found {len(row)}")
            rows.append(_row(zip(header, row), reader.line_num))
    return rows


def _read_json_rows(path: str) -> list[dict]:
    return [_row({k: v for k, v in r.items() if k != "_line"}, r["_line"]) for r in read_json_records(path)]


def read_json_records(path: str) -> list[dict]:
    """JSON objects from a JSON list, JSONL, or objects simply written one after another (pretty-
    printed, as CLUENER ships them); each with ``_line``, the line where it starts."""
    require_file(path, "data file")
    text = read_text(path)
    decoder, blank = json.JSONDecoder(), re.compile(r"\s*")
    position = blank.match(text).end()
    if text[position : position + 1] == "[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not all(isinstance(r, dict) for r in data):
            raise UserError(f"{path}: expected a list of JSON objects")
        if not data:
            raise UserError(f"{path} is an empty JSON list; give a file with data rows")
        return [{**r, "_line": None} for r in data]
    records, line, counted = [], 1, 0
    while position < len(text):
        line, counted = line + text.count("\n", counted, position), position
        try:
            record, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            number, message = _json_error_line(text, position, line, exc)
            raise UserError(f"{path}:{number}: not valid JSON ({message}); expected one JSON object per "
                            "line (JSONL) or objects one after another") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{line}: expected a JSON object")
        records.append({**record, "_line": line})
        position = blank.match(text, end).end()
    if not records:
        raise UserError(f"{path} holds no JSON objects (only blank lines); give a file with data rows")
    return records


def _json_error_line(text: str, start: int, line: int, exc: json.JSONDecodeError) -> tuple[int, str]:
    """The line to blame for a record starting at ``start`` (line ``line``) that failed to parse.
    The parser notices an unclosed JSONL record only on a later line; when the record's first
    line holds more than an opening brace (JSONL, not a pretty-printed object), blame that line."""
    end = text.find("\n", start)
    first = text[start : end if end >= 0 else len(text)]
    if exc.lineno == line or first.strip() in ("{", "["):
        return exc.lineno, exc.msg
    try:
        json.loads(first)
    except json.JSONDecodeError as own:
        return line, own.msg
    return exc.lineno, exc.msg


def require_columns(rows: list[dict], path: str, wanted: dict[str, str | None]) -> None:
    """Fail clearly when a named column (option name -> column) is missing from the file."""
    available = list(rows[0])
    for option, column in wanted.items():
        if column is not None and column not in rows[0]:
            raise UserError(f"column '{column}' not found in {os.path.basename(path)} (columns: "
                            f"{', '.join(map(str, available))}); choose it with --{option.replace('_', '-')}")
    for number, row in enumerate(rows, start=1):
        for option, column in wanted.items():
            if column is not None and column not in row:
                raise UserError(f"{row_location(path, row, number)}: no '{column}' field")
            if column is not None and row[column] is None:  # JSON null: not a class named 'None'
                raise UserError(f"{row_location(path, row, number)}: '{column}' is null; give it a value or "
                                "leave the row out")
