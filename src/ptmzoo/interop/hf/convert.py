"""Hugging Face models and model directories to and from ptmzoo.

In memory: ``to_hf_model`` / ``from_hf_model`` (needs ``transformers``). On disk:
``import_hf`` reads a HF directory (``config.json`` + ``model.safetensors`` -- possibly sharded --
or ``pytorch_model.bin``, and tokenizer files) and ``export_hf`` writes one that
``transformers.AutoModel*.from_pretrained`` loads; neither needs ``transformers``.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import torch

from ...catalog import FAMILIES, build_model
from ...checkpoint import Pretrained, check_vocab
from ...data.tokenizers import Tokenizer, UnsupportedTokenizer
from ...errors import UserError
from ...io import atomic_directory, atomic_write_json, read_json
from ...models.model import PtmModel
from .base import StateDictAdapter
from .electra import PARTS, pair_dir


def adapter_for_hf(model_type: Any, where: str) -> StateDictAdapter:
    """The adapter that reads an HF ``model_type`` (every family's adapters in the catalog)."""
    adapters = {cls.model_type: cls for spec in FAMILIES.values() for cls in spec.hf_adapters}
    if model_type not in adapters:
        raise UserError(f"{where}: model_type {model_type!r} is not supported; ptmzoo converts "
                        f"{', '.join(sorted(adapters))}")
    return adapters[model_type]()


def adapter_for_family(family: str) -> StateDictAdapter:
    """The adapter that writes a ptmzoo family in HF format (the first of its spec's adapters)."""
    spec = FAMILIES.get(family)
    if spec is None or not spec.hf_adapters:
        supported = sorted(name for name, s in FAMILIES.items() if s.hf_adapters)
        raise UserError(f"no Hugging Face format for ptmzoo family '{family}' (supported: {', '.join(supported)})")
    return spec.hf_adapters[0]()


def model_from_hf(adapter: StateDictAdapter, hf: dict[str, Any], state: dict[str, torch.Tensor], where: str,
                  architecture: str | None = None) -> PtmModel:
    """A ``PtmModel`` (with the heads found in ``state``) holding exactly the HF weights."""
    architecture = architecture or (hf.get("architectures") or [adapter.base_architecture])[0]
    config, heads, state = adapter.describe_hf(hf, state, where, architecture)
    try:
        model = build_model(adapter.family, config, heads=heads)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return adapter.fill(model, state, where, architecture)

CONFIG_FILE = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")


def is_hf_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, CONFIG_FILE))


# ---- in memory ---------------------------------------------------------------------------------
def hf_config_dict(model: PtmModel) -> dict[str, Any]:
    """config.json content for ``model``: architecture, backbone config and head settings."""
    adapter = adapter_for_family(model.family)
    architecture = adapter.architecture(model)
    return {"architectures": [architecture], **adapter.config_to_hf(model.config), **adapter.head_config_to_hf(model)}


def to_hf_model(model: PtmModel, attn_implementation: str | None = None):
    """The ``transformers`` model (in eval mode) holding ``model``'s weights and heads."""
    import transformers

    adapter = adapter_for_family(model.family)
    config_dict = hf_config_dict(model)
    architecture = config_dict["architectures"][0]
    config = transformers.AutoConfig.for_model(**config_dict)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    hf_model = getattr(transformers, architecture)(config, **adapter.hf_model_kwargs(model, architecture))
    absent = adapter.absent_in_hf_class(model)
    state = {key: tensor for key, tensor in adapter.to_hf_state(model).items() if key not in absent}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in adapter.aliases(model)]  # tied: set through their source
    if missing or unexpected:
        raise RuntimeError(f"{architecture} does not match the adapter (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    return hf_model.eval()


def from_hf_model(hf_model) -> PtmModel:
    """A ``PtmModel`` (in eval mode) holding a ``transformers`` model's weights and heads."""
    config = hf_model.config.to_dict()
    adapter = adapter_for_hf(config.get("model_type"), type(hf_model).__name__)
    return model_from_hf(adapter, config, hf_model.state_dict(), type(hf_model).__name__,
                         architecture=type(hf_model).__name__).eval()


# ---- directories -------------------------------------------------------------------------------
def read_hf_weights(directory: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = os.path.join(directory, SAFETENSORS_INDEX)
    try:
        if os.path.exists(os.path.join(directory, SAFETENSORS)):
            return load_file(os.path.join(directory, SAFETENSORS))
        if os.path.exists(index):
            shards = sorted(set(read_json(index)["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(os.path.join(directory, shard)))
            return state
        if os.path.exists(os.path.join(directory, TORCH_BIN)):
            return torch.load(os.path.join(directory, TORCH_BIN), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses any object that is not plain tensors and numbers
        raise UserError(f"{directory}/{TORCH_BIN} holds more than tensors (pickled objects that could run code), so "
                        "ptmzoo does not load it; save the model as model.safetensors with transformers "
                        "(save_pretrained(..., safe_serialization=True)) if you trust it") from None
    except (SafetensorError, OSError, RuntimeError, KeyError, json.JSONDecodeError, EOFError) as exc:
        raise UserError(f"weights in {directory} are corrupt or unreadable ({str(exc).splitlines()[0]})") from None
    raise UserError(f"{directory} has {CONFIG_FILE} but no weights ({SAFETENSORS} or {TORCH_BIN})")


def import_hf(directory: str, device: str | torch.device = "cpu") -> Pretrained:
    """Open a Hugging Face model directory as a ptmzoo model (with its heads) and tokenizer."""
    directory = os.fspath(directory)
    if not is_hf_dir(directory) and pair_dir(directory):  # ELECTRA: discriminator/ + generator/
        return _import_electra_pair(directory, device)
    where = os.path.join(directory, CONFIG_FILE)
    try:
        hf = read_json(where)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{where} is corrupt (not JSON)") from None
    if not isinstance(hf, dict):
        raise UserError(f"{where} is not a model configuration")
    adapter = adapter_for_hf(hf.get("model_type"), where)
    adapter.check_hf_config(hf, where)  # before reading possibly large weights
    model = model_from_hf(adapter, hf, read_hf_weights(directory), where)
    tokenizer, note = None, None
    if any(os.path.exists(os.path.join(directory, name)) for name in TOKENIZER_FILES):
        try:
            tokenizer = Tokenizer.load(directory)
        except UnsupportedTokenizer as exc:  # XLM's Moses + BPE: the model still runs on token ids
            note = str(exc)
        else:
            check_vocab(tokenizer, model, directory)
    meta: dict[str, Any] = {"format": "huggingface", "family": model.family, "config": model.config.to_dict(),
                            "heads": model.heads_spec(), "helpers": model.helpers_spec(),
                            "tokenizer": tokenizer.describe() if tokenizer else None,
                            "hf_architecture": (hf.get("architectures") or [adapter.base_architecture])[0]}
    if note:
        meta["tokenizer_note"] = note
    if "classification" in model.heads:
        meta["task"] = _task_from_labels(hf, model.heads["classification"].options["num_labels"])
    model.to(device).eval()
    return Pretrained(model, tokenizer, meta, directory)


def export_hf(pretrained: Pretrained, out_dir: str) -> str:
    """Write ``pretrained`` (model, tokenizer, task labels) as a Hugging Face model directory."""
    model = pretrained.model
    if pretrained.meta.get("quantization"):
        raise UserError(f"{pretrained.path} is quantized ({pretrained.meta['quantization']['method']}); Hugging Face "
                        "checkpoints hold float weights: export the model before quantizing it")
    if getattr(model.config, "layer_heads", None) is not None:
        raise UserError(f"{pretrained.path} has pruned attention heads (a different number per layer), which "
                        "transformers' configs cannot describe; export the model before pruning heads")
    adapter = adapter_for_family(model.family)
    parts = adapter.export_parts(pretrained)
    if parts:  # one HF directory per network (ELECTRA's generator and discriminator)
        with atomic_directory(out_dir) as tmp:
            written = {name: export_hf(part, os.path.join(tmp, name)) for name, part in parts.items()}
        return " + ".join(f"{name}/ {arch}" for name, arch in written.items())
    config = hf_config_dict(model)
    tokenizer = pretrained.tokenizer
    if tokenizer is not None:
        for role in ("bos", "eos", "pad"):  # generation and padding read these from config.json
            if tokenizer.role_id(role) is not None:
                config[f"{role}_token_id"] = tokenizer.role_id(role)
    task = pretrained.task or {}
    if task.get("labels"):
        config["id2label"] = {str(i): label for i, label in enumerate(task["labels"])}
        config["label2id"] = {label: i for i, label in enumerate(task["labels"])}
    config["dtype"] = "float32"
    from safetensors.torch import save_file

    state = adapter.to_hf_state(model)
    with atomic_directory(out_dir) as tmp:
        save_file(state, os.path.join(tmp, SAFETENSORS), metadata={"format": "pt"})  # HF requires the format tag
        atomic_write_json(os.path.join(tmp, CONFIG_FILE), dict(sorted(config.items())))
        if tokenizer is not None:
            tokenizer.save(tmp)
    return config["architectures"][0]


def _task_from_labels(hf: dict[str, Any], num_labels: int) -> dict[str, Any]:
    from ...tasks.classification import ClassificationOptions

    id2label = {int(i): str(label) for i, label in (hf.get("id2label") or {}).items()}
    labels = [id2label.get(i, f"LABEL_{i}") for i in range(num_labels)]
    return {"name": "classification", "labels": labels, "options": ClassificationOptions().to_dict(),
            "pooling": "cls"}


def _import_electra_pair(directory: str, device) -> Pretrained:
    parts = {name: import_hf(os.path.join(directory, name)) for name in PARTS}
    adapter = adapter_for_family("electra")
    config, state = adapter.describe_pair({n: p.model for n, p in parts.items()}, directory)
    disc = parts["discriminator"]
    model = build_model("electra", config, heads=disc.model.heads_spec(),
                        helpers={"generator": {"kind": "electra_generator", "options": {}}})
    adapter.load_state(model, state, directory)
    meta = {**disc.meta, "config": model.config.to_dict(), "heads": model.heads_spec(),
            "helpers": model.helpers_spec(),
            "hf_architecture": "+".join(p.meta["hf_architecture"] for p in parts.values())}
    return Pretrained(model.to(device).eval(), disc.tokenizer, meta, directory)
