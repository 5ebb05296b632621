"""Training checkpoints: a model directory plus ``trainer_state/`` for an exact resume.

``checkpoints/step_00000100/`` holds the model files, and in ``trainer_state/`` the optimizer
and scheduler states, every process's RNG state and ``state.json`` (step, samples and tokens
consumed, elapsed time, best metric). The directory is assembled under a temporary name, synced
to disk and renamed into place; ``checkpoints/latest`` names the newest complete one.

Nothing here unpickles arbitrary objects: RNG states are tensors in safetensors files, and the
optimizer and scheduler states are read with ``torch.load(weights_only=True)`` (tensors, numbers,
strings, lists and dicts only), so a crafted checkpoint cannot run code on ``--resume``. A missing
or unreadable file ends with one line: a resume is exact or it does not happen.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..io import atomic_write_text, read_json
from ..textio import read_text

STATE_DIR = "trainer_state"
# what state.json must hold for an exact resume (the Trainer's ``_state``)
STATE_KEYS = ("step", "samples_seen", "tokens_seen", "elapsed", "world_size", "batch_size", "num_samples")
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        return []
    names = [n for n in os.listdir(directory) if _STEP_DIR.match(n)
             and os.path.exists(os.path.join(directory, n, STATE_DIR, "state.json"))]
    return [os.path.join(directory, n) for n in sorted(names)]


def latest_checkpoint(directory: str) -> str | None:
    pointer = os.path.join(directory, "latest")
    if os.path.exists(pointer):
        name = read_text(pointer, encoding="utf-8").strip()
        candidate = os.path.join(directory, name)
        if os.path.exists(os.path.join(candidate, STATE_DIR, "state.json")):
            return candidate
    found = list_checkpoints(directory)
    return found[-1] if found else None


def mark_latest(directory: str, name: str, keep: int) -> None:
    atomic_write_text(os.path.join(directory, "latest"), name + "\n")
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.safetensors"


def save_rng_state(path: str) -> None:
    """This process's torch (and CUDA) generator states, as uint8 tensors in a safetensors file."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(state, path)


def load_rng_state(state_dir: str, rank: int) -> None:
    """Restore what ``save_rng_state`` wrote; checkpoints of earlier versions hold the same
    tensors in ``rng_rank{rank}.pt``, read with ``weights_only=True``."""
    path = os.path.join(state_dir, rng_file(rank))
    legacy = os.path.join(state_dir, f"rng_rank{rank}.pt")
    if not os.path.exists(path) and os.path.exists(legacy):
        state = load_trainer_file(legacy, lambda p: torch.load(p, weights_only=True))
        tensors = {"torch": state["torch"], **{f"cuda.{i}": s for i, s in enumerate(state.get("cuda", []))}}
    else:
        tensors = load_trainer_file(path, load_file)
    if "torch" not in tensors:
        raise UserError(f"{path} holds no torch RNG state; resume from an earlier checkpoint")
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def load_trainer_file(path: str, loader: Callable[[str], Any]) -> Any:
    """``loader(path)`` with every way a trainer-state file can be missing, truncated, corrupt or
    not plain data (a pickle that would run code) turned into one line."""
    if not os.path.exists(path):
        raise UserError(f"{path} is missing, so the run cannot be resumed exactly from there; resume from an "
                        "earlier checkpoint (--resume DIR) or start a new run from its weights (--init-from)")
    try:
        return loader(path)
    except pickle.UnpicklingError:
        raise UserError(f"{path} holds more than tensors and numbers (a pickled object that could run code); "
                        "ptmzoo does not load it: resume from a checkpoint you wrote yourself") from None
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path} is corrupt ({first_line(exc)}); resume from an earlier checkpoint") from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()


def checkpoint_write_error(checkpoint: str, exc: BaseException) -> UserError:
    """The line for a checkpoint that could not be written (a full disk, a quota, a file-size
    limit): what torch or safetensors said, and that nothing earlier was touched."""
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else first_line(exc)
    if "unexpected pos" in reason:  # torch.save's zip writer, when a write came up short
        reason = f"torch.save could not write every byte: {reason.split('. ', 1)[-1]}"
    directory = os.path.dirname(checkpoint)
    return UserError(f"cannot write checkpoint {checkpoint} ({reason}); is the disk full? The earlier checkpoints "
                     f"in {directory} are intact: free some space and continue with --resume")


def read_state(checkpoint: str) -> dict[str, Any]:
    path = os.path.join(checkpoint, STATE_DIR, "state.json")
    if not os.path.exists(path):
        raise UserError(f"{checkpoint} has no {STATE_DIR}/state.json; it cannot be resumed from")
    try:
        state = read_json(path)
    except ValueError:
        raise UserError(f"{path} is corrupt; resume from an earlier checkpoint") from None
    missing = [key for key in STATE_KEYS if key not in (state if isinstance(state, dict) else {})]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; it cannot be resumed from exactly: resume from an "
                        "earlier checkpoint")
    return state
