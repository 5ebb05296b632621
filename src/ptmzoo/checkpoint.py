"""The on-disk format of a model directory: ``ptmzoo.json`` + ``model.safetensors`` + tokenizer files.

``ptmzoo.json`` records the format version, the family and its full config, the heads and helper
networks present (so that they are rebuilt on load), the tokenizer's description and, for
fine-tuned models, the task (labels, pooling). A run that leaves the base weights untouched
(frozen, adapters, LoRA) is a *delta* directory: only the trained parameters
(``adapter.safetensors``) and the path of its base checkpoint. Directories are written
atomically (temp directory, then rename). Reading a directory back into a model is
``ptmzoo.loading``'s job; this module is the format only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save_file, save_model
from torch import nn

from ._version import __version__
from .data.tokenizers import Tokenizer
from .errors import UserError
from .io import atomic_directory, atomic_write_json, read_json
from .models.model import PtmModel, unwrap
from .nn.layout import use_standard_layout
from .train.state import latest_checkpoint

FORMAT = "ptmzoo-checkpoint"
FORMAT_VERSION = 2  # 2: helper networks (ELECTRA's generator) under "helpers"
META_FILE = "ptmzoo.json"
WEIGHTS_FILE = "model.safetensors"
SHARDED_WEIGHTS_DIR = "model"  # a sharded (FSDP) run's weights: train.sharded's format
DELTA_FILE = "adapter.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def write_model_files(directory: str, model: nn.Module, tokenizer: Tokenizer | None,
                      extra: dict[str, Any] | None = None, weights: bool = True,
                      state: dict[str, torch.Tensor] | None = None) -> None:
    """ptmzoo.json, the tokenizer and the weights: the model's, or ``state`` (e.g. gathered from
    shards); ``weights=False``: a sharded run wrote them itself (``SHARDED_WEIGHTS_DIR``)."""
    model = unwrap(model)
    os.makedirs(directory, exist_ok=True)
    meta = describe_model(model, tokenizer, extra)
    if state is not None:
        save_file(unique_tensors(state), os.path.join(directory, WEIGHTS_FILE))
    elif weights:
        use_standard_layout(model)  # safetensors reads each weight as one contiguous block
        save_model(model, os.path.join(directory, WEIGHTS_FILE))
    else:
        meta["weights"] = "sharded"
    atomic_write_json(os.path.join(directory, META_FILE), meta)
    if tokenizer is not None:
        tokenizer.save(directory)


def write_delta_files(directory: str, model: nn.Module, tokenizer: Tokenizer | None, names: list[str],
                      base_path: str, strategy: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """A delta directory: the parameters ``names`` of ``model`` and the path of its base checkpoint."""
    model = unwrap(model)
    os.makedirs(directory, exist_ok=True)
    params = dict(model.named_parameters())
    save_file({n: params[n].detach().contiguous() for n in names}, os.path.join(directory, DELTA_FILE))
    meta = describe_model(model, tokenizer, extra)
    meta["delta"] = {"base": os.path.abspath(base_path), "strategy": strategy, "file": DELTA_FILE}
    atomic_write_json(os.path.join(directory, META_FILE), meta)
    if tokenizer is not None:
        tokenizer.save(directory)


def unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each storage once (tied weights under their first name), contiguous."""
    seen: set[int] = set()
    out = {}
    for name, tensor in state.items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        out[name] = tensor.detach().contiguous()
    return out


def describe_model(model: PtmModel, tokenizer: Tokenizer | None, extra: dict[str, Any] | None = None) -> dict:
    """The contents of ``ptmzoo.json``."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ptmzoo_version": __version__,
        "family": model.family,
        "config": model.config.to_dict(),
        "heads": model.heads_spec(),
        "helpers": model.helpers_spec(),
        "tokenizer": tokenizer.describe() if tokenizer is not None else None,
    }
    meta.update(extra or {})
    return meta


def save_pretrained(directory: str, model: nn.Module, tokenizer: Tokenizer | None,
                    extra: dict[str, Any] | None = None) -> None:
    with atomic_directory(directory) as tmp:
        write_model_files(tmp, model, tokenizer, extra)


@dataclass
class Pretrained:
    """What ``ptmzoo.load`` returns."""

    model: PtmModel
    tokenizer: Tokenizer | None
    meta: dict[str, Any]
    path: str

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def task(self) -> dict[str, Any] | None:
        return self.meta.get("task")


def resolve_model_dir(path: str) -> str:
    """Accept a model directory, or a run directory (its ``best``/``final`` model, else its latest
    checkpoint), or a Hugging Face directory (``config.json``, or an ELECTRA pair of them)."""
    if not os.path.exists(path):
        raise UserError(f"checkpoint not found: {path}")
    if not os.path.isdir(path):
        raise UserError(f"{path} is a file; a checkpoint is a directory with {META_FILE} and {WEIGHTS_FILE}")
    if os.path.exists(os.path.join(path, META_FILE)):
        return path
    for candidate in ("best", "final"):
        if os.path.exists(os.path.join(path, candidate, META_FILE)):
            return os.path.join(path, candidate)
    latest = latest_checkpoint(os.path.join(path, "checkpoints"))
    if latest:
        return latest
    if os.path.exists(os.path.join(path, "config.json")):
        return path  # a Hugging Face model directory
    if all(os.path.exists(os.path.join(path, part, "config.json")) for part in ("discriminator", "generator")):
        return path  # an ELECTRA pair of Hugging Face directories
    raise UserError(f"{path} is not a ptmzoo checkpoint (no {META_FILE}); give the directory written by "
                    "`ptmzoo pretrain` or `ptmzoo finetune`")


def read_meta(directory: str) -> dict[str, Any]:
    try:
        meta = read_json(os.path.join(directory, META_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{directory}/{META_FILE} is corrupt (not JSON); the checkpoint cannot be used") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{directory}/{META_FILE} is not a ptmzoo checkpoint description")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{directory} was written by a newer ptmzoo (format {meta['format_version']}); upgrade ptmzoo")
    return upgrade_meta(meta)


def upgrade_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A description of an older format in the current one (``upgrade_weights`` renames the keys).
    Format 1 kept ELECTRA's generator inside the model (``config.with_generator``)."""
    if meta.get("format_version", 1) < 2:
        meta = {**meta, "helpers": {}}
        if meta.get("family") == "electra":
            config = dict(meta["config"])
            if config.pop("with_generator", True):
                meta["helpers"] = {"generator": {"kind": "electra_generator", "options": {}}}
            meta["config"] = config
    return meta


def upgrade_weights(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of an older format under the current names (format 1: ``generator.`` -> ``helpers.generator.``)."""
    if meta.get("format_version", 1) < 2:
        return {("helpers." + key if key.startswith("generator.") else key): value for key, value in state.items()}
    return state


def check_tokenizer(tokenizer: Tokenizer, meta: dict[str, Any], directory: str) -> None:
    """The tokenizer files must be the ones the model was trained with: ``ptmzoo.json`` keeps their
    fingerprint, and another tokenizer (files copied over from elsewhere) would silently give the
    model ids that mean other tokens."""
    expected = (meta.get("tokenizer") or {}).get("fingerprint")
    if expected and tokenizer.fingerprint() != expected:
        raise UserError(f"the tokenizer files in {directory} are not those the model was trained with (fingerprint "
                        f"{tokenizer.fingerprint()}, {META_FILE} says {expected}); put the model's own tokenizer "
                        "files back")


def check_vocab(tokenizer: Tokenizer, model: PtmModel, where: str) -> None:
    if tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(f"tokenizer vocabulary ({tokenizer.vocab_size}) is larger than the model's "
                        f"({model.config.vocab_size}) in {where}; use the tokenizer the model was trained with")


def has_tokenizer(directory: str) -> bool:
    return any(os.path.exists(os.path.join(directory, name)) for name in TOKENIZER_FILES)
