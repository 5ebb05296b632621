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
            rows.append(dict(zip(header, row)))
    return rows


def _read_json_rows(path: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "_line"} for r in read_json_records(path)]


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
        return [{**r, "_line": None} for r in data]
    records, line, counted = [], 1, 0
    while position < len(text):
        line, counted = line + text.count("\n", counted, position), position
        try:
            record, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected one JSON object per "
                            "line (JSONL) or objects one after another") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{line}: expected a JSON object")
        records.append({**record, "_line": line})
        position = blank.match(text, end).end()
    return records


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
                raise UserError(f"{path}: row {number} has no '{column}' field")
