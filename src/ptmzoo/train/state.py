"""Training checkpoints: a model directory plus ``trainer_state/`` for an exact resume.

``checkpoints/step_00000100/`` holds the model files, and in ``trainer_state/`` the optimizer
and scheduler states, every process's RNG state and ``state.json`` (step, samples and tokens
consumed, elapsed time, best metric). The directory is assembled under a temporary name and
renamed into place; ``checkpoints/latest`` names the newest complete one.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import torch

from ..errors import UserError
from ..io import atomic_write_text, read_json
from ..textio import read_text

STATE_DIR = "trainer_state"
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
        name = read_text(pointer).strip()
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


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_state(checkpoint: str) -> dict[str, Any]:
    path = os.path.join(checkpoint, STATE_DIR, "state.json")
    if not os.path.exists(path):
        raise UserError(f"{checkpoint} has no {STATE_DIR}/state.json; it cannot be resumed from")
    try:
        return read_json(path)
    except ValueError:
        raise UserError(f"{path} is corrupt; resume from an earlier checkpoint") from None
