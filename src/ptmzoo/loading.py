"""``ptmzoo.load``: the front door for every kind of model directory.

* a ptmzoo checkpoint (``ptmzoo.json`` + ``model.safetensors``), or a run directory (its best or
  final model, else its latest checkpoint);
* a delta run (frozen / adapters / LoRA): the base checkpoint, the run's heads and added modules,
  then its own parameters on top, in the family's wrapper (an encoder-decoder stays one);
* a Hugging Face directory (``interop.hf``);
* a compressed checkpoint: what its ``ptmzoo.json`` records (``compress.recorded``) is rebuilt first.

The model is assembled by ``catalog.build_model`` from the description in ``ptmzoo.json``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    set_model_state_dict,
)

from .catalog import build_model
from .checkpoint import (
    META_FILE,
    SHARDED_WEIGHTS_DIR,
    WEIGHTS_FILE,
    check_tokenizer,
    check_vocab,
    has_tokenizer,
    read_meta,
    resolve_model_dir,
    upgrade_weights,
)
from .compress.recorded import rebuild
from .data.tokenizers import Tokenizer
from .errors import BadInput, UserError
from .finetune.strategies import StrategyConfig, add_structure
from .interop.hf.convert import import_hf
from .models.model import PtmModel
from .predictions import Model
from .train.sharded import load_sharded


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    """Open a ptmzoo checkpoint or a Hugging Face model directory: ``.model`` (in eval mode),
    ``.tokenizer`` and ``.predict`` (``ptmzoo.predictions``)."""
    if not isinstance(path, (str, os.PathLike)):
        raise BadInput(f"ptmzoo.load needs the path of a checkpoint or run directory, not {path!r}")
    directory = resolve_model_dir(os.fspath(path))
    if not os.path.exists(os.path.join(directory, META_FILE)):
        return Model.of(import_hf(directory, device))
    meta = read_meta(directory)
    if "delta" in meta:
        return load_delta(directory, meta, device)
    model = model_from_meta(meta)
    if meta.get("weights") == "sharded":  # a checkpoint of an FSDP run: its shards, as one model
        state = get_model_state_dict(model)
        load_sharded(os.path.join(directory, SHARDED_WEIGHTS_DIR), state)
        set_model_state_dict(model, state)
    else:
        state = read_weights(os.path.join(directory, WEIGHTS_FILE), directory)
        load_weights(model, upgrade_weights(meta, state), directory)
    tokenizer = read_tokenizer(directory, model, meta)
    model.to(device).eval()
    return Model(model, tokenizer, meta, directory)


def model_from_meta(meta: dict[str, Any]) -> PtmModel:
    model = build_model(meta.get("family"), meta.get("config", {}), heads=meta.get("heads"),
                        helpers=meta.get("helpers"))
    return rebuild(model, meta)  # what compression recorded (int8 layers), before the weights load


def read_weights(path: str, directory: str) -> dict[str, torch.Tensor]:
    if not os.path.exists(path):
        raise UserError(f"{directory} has no {os.path.basename(path)}; the checkpoint is incomplete")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path} is corrupt ({exc}); the checkpoint cannot be used") from None


def load_weights(model: PtmModel, state: dict[str, torch.Tensor], directory: str) -> None:
    """Load ``state`` strictly; tied weights may be stored once (safetensors keeps one copy)."""
    where = os.path.join(directory, WEIGHTS_FILE)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line.strip() for line in lines if "size mismatch" in line), lines[-1] if lines else "")
        raise UserError(f"weights in {where} do not fit the config in {META_FILE}: {detail}") from None
    tensors = model.state_dict(keep_vars=True)
    owners: dict[int, set[str]] = {}
    for name, tensor in tensors.items():
        owners.setdefault(id(tensor), set()).add(name)
    missing = [k for k in missing if not owners[id(tensors[k])] & set(state)]
    if missing or unexpected:
        names = sorted(missing)[:3] or sorted(unexpected)[:3]
        raise UserError(f"weights in {where} do not match the model ({'missing' if missing else 'unexpected'}: "
                        f"{', '.join(names)}); the checkpoint is damaged or from another model")


def read_tokenizer(directory: str, model: PtmModel, meta: dict[str, Any]) -> Tokenizer | None:
    if not has_tokenizer(directory):
        return None
    tokenizer = Tokenizer.load(directory)
    check_vocab(tokenizer, model, directory)
    check_tokenizer(tokenizer, meta, directory)
    return tokenizer


def load_delta(directory: str, meta: dict[str, Any], device: str | torch.device = "cpu") -> Model:
    """Rebuild a frozen/adapter/LoRA run: the base checkpoint, the heads, the added modules, then
    the saved parameters on top."""
    info = meta["delta"]
    if not os.path.exists(info["base"]):
        raise UserError(f"{directory} holds only the {info['strategy']['method']} parameters of a model based on "
                        f"{info['base']}, which is not there; put the base checkpoint back at that path")
    base = load(info["base"])
    if base.model.config.to_dict() != meta["config"]:
        raise UserError(f"the base checkpoint {info['base']} is not the model {directory} was trained on "
                        "(its config differs)")
    model = build_model(base.family, backbone=base.model.backbone, heads=meta.get("heads"))
    add_structure(model, StrategyConfig.from_dict(info["strategy"]))
    state = read_weights(os.path.join(directory, info["file"]), directory)
    missing, unexpected = model.load_state_dict(state, strict=False)
    not_in_base = [k for k in missing if k not in base.model.state_dict()]
    if unexpected or not_in_base:
        raise UserError(f"{directory}/{info['file']} does not fit its model "
                        f"({'unexpected' if unexpected else 'missing'}: {(unexpected or not_in_base)[0]})")
    tokenizer = Tokenizer.load(directory) if has_tokenizer(directory) else base.tokenizer
    if tokenizer is not None:
        check_tokenizer(tokenizer, meta, directory)
    model.to(device).eval()
    return Model(model, tokenizer, meta, directory)
