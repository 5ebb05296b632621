"""Atomic, durable writes: a crash or a power loss never leaves a half-written checkpoint, shard
set or report.

Everything is written under a temporary name beside its destination, flushed to disk (``fsync``
of every file and of the directory), and only then renamed into place; the parent directory is
synced after the rename so that the rename itself survives a power loss. Outputs get the usual
permissions of the user's umask (``tempfile`` alone would create them 0700/0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Any


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


def umask_mode(directory: bool) -> int:
    """The mode ``open``/``mkdir`` would give a new file or directory under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def fsync_path(path: str) -> None:
    """Flush a file's or a directory's contents (its entries, for a directory) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle_tree(root: str) -> None:
    """Give every file and directory below ``root`` (and ``root``) the umask's mode -- mkdtemp,
    mkstemp and safetensors create 0700/0600 -- and fsync them, deepest first."""
    dir_mode, file_mode = umask_mode(True), umask_mode(False)
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, file_mode)
                fsync_path(path)
        os.chmod(directory, dir_mode)
        fsync_path(directory)


def durable_rename(tmp: str, path: str) -> None:
    """Rename a finished temporary file or directory into place so that neither an empty file nor a
    missing rename can come out of a power loss: contents first, then the rename, then the parent."""
    if os.path.isdir(tmp):
        settle_tree(tmp)
    else:
        fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))


def make_temp_dir(path: str, label: str = "tmp") -> str:
    """A new temporary directory beside ``path`` (same file system, so the rename is atomic)."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.{label}-", dir=parent)


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    If the block raises (a full disk, Ctrl-C), the temporary directory is removed and ``path`` is
    left untouched.
    """
    path = os.path.abspath(path)
    tmp = make_temp_dir(path)
    try:
        yield tmp
        settle_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(path):
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(path)
        old = make_temp_dir(path, "old")
        os.rename(path, os.path.join(old, "x"))
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)
    fsync_path(os.path.dirname(path))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _default_sigterm_in_child() -> None:
    # A process forked inside ``sigterm_interrupts`` (a worker pool) must die on SIGTERM at once, as
    # Pool.terminate expects: a Python-level handler never runs in a worker blocked in C code.
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_sigterm_in_child)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM (a killed or pre-empted job) raises KeyboardInterrupt as Ctrl-C does,
    so that ``atomic_directory`` removes its temporary directory and the CLI exits with 130 --
    instead of dying at once and leaving a partial ``.OUT.tmp-*`` behind."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def atomic_write_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode(False))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_path(directory)


def atomic_write_json(path: str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str) -> Any:
    from .textio import read_text

    return json.loads(read_text(path, encoding="utf-8"))
