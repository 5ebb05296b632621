"""Reading text files: UTF-8 only, a leading byte-order mark dropped, and one clear line for
anything else.

Every reader of user text (corpora, labelled data, recipes, vocabularies, prompt and triple files)
goes through here, so a GBK or Latin-1 file gives the same ``UserError`` everywhere -- naming the
file, the line and the byte where decoding failed, and how to convert the file -- instead of a
``UnicodeDecodeError`` traceback, and a BOM written by Windows editors never becomes part of the
first token, column name or JSON value.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .errors import UserError

BOM = b"\xef\xbb\xbf"


def not_utf8(path: str | os.PathLike, data: bytes, exc: UnicodeDecodeError, first_line: int = 1,
             offset: int = 0) -> UserError:
    """The error for ``data`` (read from ``path`` starting at line ``first_line``, byte ``offset``)
    failing to decode at ``exc.start``."""
    path = os.fspath(path)
    line = first_line + data.count(b"\n", 0, exc.start)
    name = os.path.basename(path)
    return UserError(f"{path}:{line}: not UTF-8 text (byte {offset + exc.start}: {exc.reason}); convert the file "
                     f"to UTF-8, e.g. `iconv -f GBK -t UTF-8 {name} > utf8-{name}`")


def decode_line(data: bytes, path: str | os.PathLike, number: int, offset: int) -> str:
    """One line (or any piece) of a file as text; ``number`` is its line number, ``offset`` the
    byte where it starts. Line 1 loses its byte-order mark."""
    if number == 1 and data.startswith(BOM):
        data, offset = data[len(BOM):], offset + len(BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, data, exc, number, offset) from None


def read_text(path: str | os.PathLike) -> str:
    """The whole file as text."""
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_line(data, path, 1, 0)


def text_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a file (line ends kept, ``\\r`` included), streamed: only one line is in memory."""
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield decode_line(raw, path, number, offset)
            offset += len(raw)


@contextlib.contextmanager
def open_text(path: str | os.PathLike) -> Iterator[Iterator[str]]:
    """``with open_text(path) as fh: for line in fh`` -- ``open(path, encoding="utf-8")`` with the
    BOM dropped and the clear error of this module."""
    lines = text_lines(path)
    try:
        yield lines
    finally:
        lines.close()
