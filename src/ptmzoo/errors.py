"""User-facing errors.

A ``UserError`` is a mistake the user can fix (a missing file, an unknown preset, a wrong
column). The CLI prints its message as one line and exits with code 2; the traceback is shown
only with ``--debug``. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with the user's input, reported as one line with the fix."""

    exit_code = 2


class BadInput(UserError, ValueError):
    """A bad argument to the Python API (token ids out of range, no checkpoint path): a
    ``ValueError`` for the caller, and one line on the command line like every ``UserError``."""


def require_file(path: str | os.PathLike, what: str = "file") -> str:
    """Return ``path`` as a string if it names an existing, non-empty file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path} (check the path)")
    if os.path.isdir(path):
        raise UserError(f"{what} is a directory, expected a file: {path}")
    if os.path.getsize(path) == 0:
        raise UserError(f"{what} is empty: {path} (give a file with content)")
    return path


def require_dir(path: str | os.PathLike, what: str = "directory") -> str:
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise UserError(f"{what} not found: {path} (check the path)")
    return path


def require_int_list(text: str, flag: str, example: str, minimum: int = 1) -> list[int]:
    """Comma-separated whole numbers of at least ``minimum`` (``--budgets 200,500``), or one line
    saying what is wrong."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        raise UserError(f"{flag} {text!r} must be comma-separated whole numbers of at least {minimum}, e.g. {example}")
    return values
