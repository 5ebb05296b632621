"""Model directories: ``ptmzoo.json`` + ``model.safetensors`` + tokenizer files.

``ptmzoo.json`` records the format version, the family and its full config, the heads present
(so that they are rebuilt on load), the tokenizer's description and, for fine-tuned models, the
task (labels, pooling). Directories are written atomically (temp directory, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from . import __version__
from .data.tokenizers import Tokenizer
from .errors import BadInput, UserError
from .io import atomic_directory, atomic_write_json, read_json
from .models import backbone_class
from .models.model import HEAD_TYPES, PtmModel
from .models.seq2seq import model_for

FORMAT = "ptmzoo-checkpoint"
FORMAT_VERSION = 1
META_FILE = "ptmzoo.json"
WEIGHTS_FILE = "model.safetensors"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def write_model_files(directory: str, model: nn.Module, tokenizer: Tokenizer | None,
                      extra: dict[str, Any] | None = None) -> None:
    model = unwrap(model)
    os.makedirs(directory, exist_ok=True)
    save_model(model, os.path.join(directory, WEIGHTS_FILE))
    atomic_write_json(os.path.join(directory, META_FILE), describe_model(model, tokenizer, extra))
    if tokenizer is not None:
        tokenizer.save(directory)


def describe_model(model: PtmModel, tokenizer: Tokenizer | None, extra: dict[str, Any] | None = None) -> dict:
    """The contents of ``ptmzoo.json``."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ptmzoo_version": __version__,
        "family": model.family,
        "config": model.config.to_dict(),
        "heads": model.heads_spec(),
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
    """Accept a model directory, or a run directory (its ``final`` model, else latest checkpoint)."""
    if not os.path.exists(path):
        raise UserError(f"checkpoint not found: {path}")
    if not os.path.isdir(path):
        raise UserError(f"{path} is a file; a checkpoint is a directory with {META_FILE} and {WEIGHTS_FILE}")
    if os.path.exists(os.path.join(path, META_FILE)):
        return path
    for candidate in ("best", "final"):
        if os.path.exists(os.path.join(path, candidate, META_FILE)):
            return os.path.join(path, candidate)
    from .train.state import latest_checkpoint

    latest = latest_checkpoint(os.path.join(path, "checkpoints"))
    if latest:
        return latest
    if os.path.exists(os.path.join(path, "config.json")):
        return path  # a Hugging Face model directory; ``load`` hands it to interop.hf
    if all(os.path.exists(os.path.join(path, part, "config.json")) for part in ("discriminator", "generator")):
        return path  # an ELECTRA pair of Hugging Face directories (interop.hf.electra)
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
    return meta


def build_model(meta: dict[str, Any]) -> PtmModel:
    family = meta.get("family")
    cls = backbone_class(family)
    config = cls.config_class.from_dict(meta.get("config", {}), where="config.")
    model = model_for(family, cls(config))  # Seq2SeqModel for encoder-decoders
    for name, spec in (meta.get("heads") or {}).items():
        if spec.get("kind") not in HEAD_TYPES:
            raise UserError(f"checkpoint has a head of unknown kind {spec.get('kind')!r}; upgrade ptmzoo")
        model.add_head(name, spec["kind"], **(spec.get("options") or {}))
    return model


def load(path: str, device: str | torch.device = "cpu") -> Pretrained:
    """Open a ptmzoo checkpoint or a Hugging Face model directory: ``.model`` (in eval mode) and
    ``.tokenizer``."""
    import ptmzoo.objectives
    import ptmzoo.tasks  # noqa: F401

    from .finetune.strategies import load_delta  # also registers the layer-mix head

    if not isinstance(path, (str, os.PathLike)):
        raise BadInput(f"ptmzoo.load needs the path of a checkpoint or run directory, not {path!r}")
    directory = resolve_model_dir(os.fspath(path))
    if not os.path.exists(os.path.join(directory, META_FILE)):
        from .interop.hf import import_hf

        return import_hf(directory, device)
    meta = read_meta(directory)
    if "delta" in meta:  # adapters/LoRA/frozen run: only its own parameters, on top of a base checkpoint
        return load_delta(directory, meta, device)
    model = build_model(meta)
    weights = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.exists(weights):
        raise UserError(f"{directory} has no {WEIGHTS_FILE}; the checkpoint is incomplete")
    try:
        missing, unexpected = load_model(model, weights, strict=False)
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights} is corrupt ({exc}); the checkpoint cannot be used") from None
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[-1] if first else "")
        raise UserError(f"weights in {weights} do not fit the config in {META_FILE}: {detail}") from None
    if missing or unexpected:
        names = sorted(missing)[:3] or sorted(unexpected)[:3]
        raise UserError(f"weights in {weights} do not match the model ({'missing' if missing else 'unexpected'}: "
                        f"{', '.join(names)}); the checkpoint is damaged or from another model")
    tokenizer = None
    if os.path.exists(os.path.join(directory, "tokenizer.json")) or os.path.exists(os.path.join(directory, "vocab.txt")):
        tokenizer = Tokenizer.load(directory)
        check_vocab(tokenizer, model, directory)
        check_tokenizer(tokenizer, meta, directory)
    model.to(device).eval()
    return Pretrained(model, tokenizer, meta, directory)


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
