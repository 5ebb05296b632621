"""Where the command line writes: the ``--out`` rule, what ptmzoo wrote, and one writer at a time.

The rule, for every verb: an existing, non-empty ``--out`` is refused with one line, unless
``--resume`` applies (the verb continues its own run there) or ``--overwrite`` is given. An
output file is never one of the verb's input files.

``--overwrite`` replaces only what ptmzoo wrote. Each output directory holds a manifest
(``.ptmzoo-outputs.json``) of the entries ptmzoo created in it; a directory that also holds
anything else (``--out .`` in a working directory, a folder of the user's files) is refused even
with ``--overwrite``, so no file of the user's is ever deleted or replaced.

A process writing an output holds an exclusive ``flock`` on a lock file (inside a run directory,
beside a directory or file that is written elsewhere and renamed into place): a second process
aimed at the same ``--out`` is refused at once with the first one's pid and command, instead of
both writing interleaved metrics and checkpoints.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterable

from .errors import UserError
from .io import atomic_write_json

OVERWRITE_HELP = "replace ptmzoo's earlier output in --out (never files ptmzoo did not write)"
MANIFEST = ".ptmzoo-outputs.json"
LOCK = ".ptmzoo-lock"  # inside a run directory
LOCK_SUFFIX = ".ptmzoo-lock"  # beside an output renamed into place: .NAME.ptmzoo-lock
BOOKKEEPING = (MANIFEST, LOCK)

# what each run verb writes in its --out, recorded before the run so that a run killed with -9
# still has them listed; whatever else it creates is added when the process ends
PRETRAIN_OUTPUTS = ("recipe.yaml", "metrics.jsonl", "tensorboard", "checkpoints", "final")
FINETUNE_OUTPUTS = ("metrics.jsonl", "tensorboard", "checkpoints", "best", "metrics.json", "merged", "lr_search",
                    "confusion_matrix.png", "per_type.tsv",
                    *(f"predictions.{split}{suffix}" for split in ("dev", "test") for suffix in (".tsv", ".jsonl", ".json")))

_claims: dict[str, _Claim] = {}  # by lock file; held until the process ends (the lock with them)


def _entries(directory: str) -> set[str]:
    return set(os.listdir(directory)) - set(BOOKKEEPING) if os.path.isdir(directory) else set()


def _read_manifest(directory: str) -> set[str]:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh).get("written", [])
        return {n for n in names if isinstance(n, str)}
    except (OSError, ValueError, AttributeError):
        return set()  # no (readable) manifest: nothing counts as ptmzoo's


def _write_manifest(directory: str, names: Iterable[str]) -> None:
    atomic_write_json(os.path.join(directory, MANIFEST), {"written": sorted(names)})


def _shown(names: Iterable[str], most: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


class _Claim:
    """An output held by this process: its lock, and (for a directory) what was foreign in it."""

    def __init__(self, path: str, lock_path: str, remove_lock: bool):
        self.path = path
        self.lock_path = lock_path
        self.remove_lock = remove_lock
        if lock_path in _claims:  # an earlier verb run in this same process (Python, tests): done now
            _claims.pop(lock_path).release()
        self.fd = _lock(lock_path, path)
        self.directory = False
        self.created = False
        self.foreign: set[str] = set()

    def release(self) -> None:
        if self.directory and os.path.isdir(self.path):
            mine = _entries(self.path) - self.foreign
            if self.created and not _entries(self.path):
                shutil.rmtree(self.path, ignore_errors=True)  # a failed first run leaves no empty --out
            elif mine or os.path.exists(os.path.join(self.path, MANIFEST)):
                _write_manifest(self.path, mine)
        if self.remove_lock:  # still locked: a process that opened it meanwhile finds it unlinked
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
        os.close(self.fd)


def _lock(lock_path: str, what: str) -> int:
    """An exclusive lock on ``lock_path``, or a UserError naming the process that holds it."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 500).decode("utf-8", "replace").strip() or "pid unknown"
            os.close(fd)
            raise UserError(f"{what} is being written by another ptmzoo process ({holder}); wait for it to "
                            "finish or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder unlinked it while we waited for the lock: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}: ptmzoo {' '.join(sys.argv[1:])}"[:400].encode())
    return fd


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 owns the output


def _hold(claim: _Claim) -> None:
    if not _claims:
        atexit.register(release_outputs)
    _claims[claim.lock_path] = claim


def release_outputs() -> None:
    """Record what was written and unlock every output of this process (at exit; and for a
    program that runs several verbs in one process)."""
    while _claims:
        _claims.popitem()[1].release()


def claim_output_dir(path: str, overwrite: bool = False) -> None:
    """Check ``--out`` DIR of a verb whose output is assembled beside it and renamed into place
    (tokenizer, shards, a model directory) against the rule, and lock it until the process ends."""
    _claim_dir(path, overwrite, None, (), in_place=False, resumable=False)


def claim_run_dir(path: str, overwrite: bool = False, resume=None, writes: Iterable[str] = (),
                  resumable: bool = True) -> None:
    """Check ``--out`` DIR of a verb that writes into it over a whole run (pretrain, finetune,
    transfer, demo) and lock it until the process ends. ``--overwrite`` first removes ptmzoo's
    earlier entries there; ``writes`` names what the run will create; ``resume``: its ``--resume``
    (a verb without one passes ``resumable=False``)."""
    _claim_dir(path, overwrite, resume, writes, in_place=True, resumable=resumable)


def _claim_dir(path: str, overwrite: bool, resume, writes: Iterable[str], in_place: bool, resumable: bool) -> None:
    if not _is_main_process():
        return
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--out {path} is a file; give a directory (a new one, or one ptmzoo wrote)")
    if resume and overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; give one of them")
    created = not os.path.exists(path)
    if in_place:
        os.makedirs(path, exist_ok=True)
        claim = _Claim(path, os.path.join(path, LOCK), remove_lock=False)
    else:  # the lock and the temporary copy lie beside DIR: its parent must exist (runs/c/int8 in a new runs/c)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        claim = _Claim(path, _beside(path), remove_lock=True)
    try:
        existing = _entries(path)
        ours = _read_manifest(path) & existing
        if existing and not resume:
            if not overwrite:
                hint = "continue it with --resume, replace it with --overwrite" if resumable \
                    else "replace ptmzoo's earlier output with --overwrite"
                raise UserError(f"--out {path} exists and is not empty; {hint}, or choose another --out")
            if existing - ours:
                raise UserError(f"--out {path} holds files ptmzoo did not write ({_shown(existing - ours)}); "
                                "--overwrite replaces only ptmzoo's own outputs: choose an empty or new --out")
            if in_place:
                for name in ours:
                    target = os.path.join(path, name)
                    if os.path.isdir(target) and not os.path.islink(target):
                        shutil.rmtree(target)
                    else:
                        os.unlink(target)
                existing = ours = set()
    except BaseException:
        claim.release()
        raise
    claim.directory, claim.created, claim.foreign = True, created, existing - ours
    if in_place:
        _write_manifest(path, ours | (set(writes) - claim.foreign))
    _hold(claim)


def claim_output_file(path: str, overwrite: bool = False, inputs: Iterable[str | None] = (), flag: str = "--out",
                      label: str | None = None) -> None:
    """Check the output FILE given by ``flag``: not a directory, not one of ``inputs``, not an
    existing file unless ``--overwrite``; and lock it until the process ends. ``label`` names the
    file in errors (default: the flag; e.g. a report written beside it)."""
    if not _is_main_process():
        return
    path, label = os.path.abspath(path), label or flag
    if os.path.isdir(path):
        raise UserError(f"{label} {path} is a directory; give the name of the file to write")
    for source in inputs:
        if source and os.path.exists(source) and os.path.realpath(source) == os.path.realpath(path):
            raise UserError(f"{label} {path} is also an input file; write the output to another file")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    claim = _Claim(path, _beside(path), remove_lock=True)
    if os.path.exists(path) and os.path.getsize(path) > 0 and not overwrite:
        claim.release()
        raise UserError(f"{label} {path} exists; replace it with --overwrite or choose another {flag}")
    _hold(claim)


def _beside(path: str) -> str:
    """The lock file of an output that is renamed into place: beside it, as the temporary copy is."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{LOCK_SUFFIX}")
