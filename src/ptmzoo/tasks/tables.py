"""Labelled data files: TSV, CSV, JSONL (or a JSON list) with named columns.

TSV and CSV have a header row unless column names are given (``columns=["s1", "s2", "label"]``
for a file without a header, such as AFQMC); a wanted column missing from a first row that looks
like data says so and suggests ``--columns``. TSV is read without quote handling -- sentences in
TSV corpora contain bare quotes. Malformed rows fail with file, line and what was expected.

Rows with more fields than the header (STS-B has 197) fail, naming ``--keep-columns``: with the
columns to keep named (``keep_columns=["sentence1", "sentence2", "score"]``) the header's
columns are read from the first fields of every row, the extra fields at the end of a long row
are dropped, and the rows hold only the kept columns. Files are decoded in the ``--encoding``
in effect (``reading``).
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import json
import os
import re
from collections.abc import Iterator

from ..errors import UserError, require_file
from ..textio import open_text, read_text, reading_encoding

TABLE_FORMATS = ("auto", "tsv", "csv", "jsonl")


_KEEP_COLUMNS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("ptmzoo_keep_columns", default=None)


@contextlib.contextmanager
def reading(encoding: str | None = None, keep_columns: list[str] | None = None) -> Iterator[None]:
    """Read user data files within the block in ``encoding`` (``--encoding``), keeping only the
    columns ``keep_columns`` of TSV/CSV tables (``--keep-columns``)."""
    with reading_encoding(encoding):
        token = _KEEP_COLUMNS.set(list(keep_columns) if keep_columns else None)
        try:
            yield
        finally:
            _KEEP_COLUMNS.reset(token)


class Row(dict):
    """A data row (column -> value) that knows the line of the file it was read from, and whether
    its column names came from the file's first row (``header``: that row)."""

    line: int | None = None
    header: list[str] | None = None


def _row(values, line: int | None, header: list[str] | None = None) -> Row:
    row = Row(values)
    row.line = line
    row.header = header
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
    if fmt == "text":
        raise UserError("--format text (plain sentences, one a line) is an input of `ptmzoo predict` with a tagging "
                        "model; labelled files are tsv, csv, jsonl or conll")
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
    keep = _KEEP_COLUMNS.get()
    with open_text(path) as fh:  # lines keep their ends, as csv wants (newline="")
        reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
        header, from_file = columns, None
        if header is None:
            header = next(reader, None)
            if header is None:
                return []
            header = from_file = [h.strip() for h in header]
            if len(set(header)) != len(header):
                raise UserError(f"{path}:1: repeated column names in the header {header}")
        if keep is not None:
            missing = [c for c in keep if c not in header]
            if missing:
                raise UserError(f"--keep-columns: no column {', '.join(map(repr, missing))} in {os.path.basename(path)}"
                                f" (columns: {', '.join(header)})")
        kept = [header.index(c) for c in keep] if keep is not None else None
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < len(header) or (len(row) > len(header) and kept is None):
                raise UserError(_field_count_error(path, reader.line_num, fmt, header, row, from_file))
            if kept is None:
                rows.append(_row(zip(header, row), reader.line_num, from_file))
            else:
                rows.append(_row(((header[i], row[i]) for i in kept), reader.line_num, from_file))
    return rows


def _field_count_error(path: str, line: int, fmt: str, header: list[str], row: list[str],
                       from_file: list[str] | None) -> str:
    message = f"{path}:{line}: expected {len(header)} {fmt.upper()} fields ({', '.join(header)}), found {len(row)}"
    if len(row) > len(header):
        message += ("; to read such rows, name the columns to keep with --keep-columns (e.g. --keep-columns "
                    f"{','.join(header[-2:])}): the extra fields at the end of a row are then dropped")
        if fmt == "tsv":
            message += " (TSV has no quoting: a tab inside a text splits it)"
    elif from_file is not None and looks_like_data(from_file):
        message += f"; the first row looks like data, not a header: {no_header_hint(from_file)}"
    return message


def looks_like_data(cells: list[str]) -> bool:
    """Whether a first row reads as data rather than column names: a cell that is a number, or
    one that reads as a sentence (long, or several words)."""
    def number(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    return any(number(c) or len(c) > 30 or len(c.split()) > 3 for c in cells if c.strip())


def no_header_hint(first_row: list[str], names: list[str] | None = None,
                   pick: str = "--text-column, --label-column (--text-pair-column)") -> str:
    """How to read a file whose first row is data: name its columns (``names``: an example)."""
    if names is None or len(names) != len(first_row):
        names = {2: ["text", "label"], 3: ["text", "text_pair", "label"]}.get(
            len(first_row), [f"col{i + 1}" for i in range(len(first_row))])
    return (f"the file seems to have no header row; name its {len(first_row)} columns with --columns "
            f"{','.join(names)} and pick them with {pick}")


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
    header = getattr(rows[0], "header", None)
    for option, column in wanted.items():
        if column is not None and column not in rows[0]:
            message = (f"column '{column}' not found in {os.path.basename(path)} (columns: "
                       f"{', '.join(map(str, available))}); ")
            if header is not None and looks_like_data(header):
                raise UserError(message + no_header_hint(header))
            raise UserError(message + f"choose it with --{option.replace('_', '-')}")
    for number, row in enumerate(rows, start=1):
        for option, column in wanted.items():
            if column is not None and column not in row:
                raise UserError(f"{row_location(path, row, number)}: no '{column}' field")
            if column is not None and row[column] is None:  # JSON null: not a class named 'None'
                raise UserError(f"{row_location(path, row, number)}: '{column}' is null; give it a value or "
                                "leave the row out")
