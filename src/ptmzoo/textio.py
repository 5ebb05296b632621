"""Reading text files: UTF-8 by default (or the encoding the user names), a leading byte-order
mark dropped, and one clear line for anything that does not decode.

Every reader of user text (corpora, labelled data, recipes, vocabularies, prompt and triple files)
goes through here, so a GBK or Latin-1 file gives the same ``UserError`` everywhere -- naming the
file, the line and the byte where decoding failed, the ``--encoding`` to pass and how to convert
the file -- instead of a ``UnicodeDecodeError`` traceback, and a BOM written by Windows editors
never becomes part of the first token, column name or JSON value.

The encoding of user files is ``--encoding`` (config key ``encoding``, default utf-8): a verb
reads its user files inside ``with reading_encoding(name):``, and every reader here without an
explicit ``encoding`` uses it. The project's own files (``ptmzoo.json``, vocabularies, run state)
are always UTF-8: their readers pass ``encoding="utf-8"``.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

from .errors import UserError

BOM = b"\xef\xbb\xbf"
DEFAULT_ENCODING = "utf-8"
ENCODING_HELP = "encoding of the input text files, e.g. gbk, gb18030, latin-1"

_ENCODING: contextvars.ContextVar[str] = contextvars.ContextVar("ptmzoo_text_encoding", default=DEFAULT_ENCODING)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def check_encoding(name: str) -> str:
    """The codec's canonical name; a clear error for an unknown one or one whose lines are not
    split at the byte ``\\n`` (UTF-16/32: convert those files)."""
    try:
        canonical = codecs.lookup(name).name
    except (LookupError, TypeError):
        raise UserError(f"unknown text encoding '{name}' (e.g. utf-8, gbk, gb18030, big5, latin-1, cp1252)") from None
    if canonical.startswith(("utf-16", "utf-32")):
        raise UserError(f"--encoding {name}: files in {canonical.upper()} are not read line by line; convert the "
                        f"file to UTF-8, e.g. `iconv -f {canonical.upper()} -t UTF-8 FILE > utf8-FILE`")
    return canonical


def add_encoding_argument(parser) -> None:
    """``--encoding`` of a verb that reads user text (``ptmzoo.cli.main`` reads its files in it)."""
    parser.add_argument("--encoding", default=DEFAULT_ENCODING, help=ENCODING_HELP)


def current_encoding() -> str:
    """The encoding of user files in effect (``reading_encoding``; utf-8 outside one)."""
    return _ENCODING.get()


@contextlib.contextmanager
def reading_encoding(name: str | None) -> Iterator[str]:
    """Read user files in ``name`` (None: utf-8) within the block."""
    token = _ENCODING.set(check_encoding(name or DEFAULT_ENCODING))
    try:
        yield _ENCODING.get()
    finally:
        _ENCODING.reset(token)


def _guess(data: bytes) -> str:
    """The encoding to suggest for bytes that are not UTF-8: GB18030 (a superset of GBK) when they
    decode to Chinese text in it, else latin-1."""
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return "latin-1"
    return "gb18030" if _CJK.search(text) else "latin-1"


def not_decoded(path: str | os.PathLike, data: bytes, exc: UnicodeDecodeError, first_line: int = 1,
                offset: int = 0, encoding: str = DEFAULT_ENCODING) -> UserError:
    """The error for ``data`` (read from ``path`` starting at line ``first_line``, byte ``offset``)
    failing to decode in ``encoding`` at ``exc.start``."""
    path = os.fspath(path)
    line = first_line + data.count(b"\n", 0, exc.start)
    name = os.path.basename(path)
    shown = "UTF-8" if encoding == DEFAULT_ENCODING else encoding.upper()
    if encoding == DEFAULT_ENCODING:
        hint = (f"pass --encoding {_guess(data)} (or the file's own encoding), or convert the file to UTF-8, e.g. "
                f"`iconv -f GBK -t UTF-8 {name} > utf8-{name}`")
    else:
        hint = "pass the file's own encoding with --encoding (utf-8, gbk, gb18030, big5, latin-1, ...)"
    return UserError(f"{path}:{line}: not {shown} text (byte {offset + exc.start}: {exc.reason}); {hint}")


def decode_line(data: bytes, path: str | os.PathLike, number: int, offset: int, encoding: str | None = None) -> str:
    """One line (or any piece) of a file as text; ``number`` is its line number, ``offset`` the
    byte where it starts. Line 1 loses its byte-order mark."""
    encoding = encoding or current_encoding()
    if number == 1 and data.startswith(BOM):
        data, offset = data[len(BOM):], offset + len(BOM)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise not_decoded(path, data, exc, number, offset, encoding) from None


def read_text(path: str | os.PathLike, encoding: str | None = None) -> str:
    """The whole file as text."""
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_line(data, path, 1, 0, encoding)


def text_lines(path: str | os.PathLike, encoding: str | None = None) -> Iterator[str]:
    """The lines of a file (line ends kept, ``\\r`` included), streamed: only one line is in memory."""
    encoding = encoding or current_encoding()  # fixed when the reading starts
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield decode_line(raw, path, number, offset, encoding)
            offset += len(raw)


@contextlib.contextmanager
def open_text(path: str | os.PathLike, encoding: str | None = None) -> Iterator[Iterator[str]]:
    """``with open_text(path) as fh: for line in fh`` -- ``open(path, encoding=...)`` with the
    BOM dropped and the clear error of this module."""
    lines = text_lines(path, encoding)
    try:
        yield lines
    finally:
        lines.close()
