"""Sharded checkpoints: ``torch.distributed.checkpoint`` (DCP) with a metadata file that cannot run code.

DCP writes each process's shards of every tensor (``__<rank>_0.distcp``, read back with
``torch.load(weights_only=True)``) and one metadata file saying which chunk of which tensor lies
where; any number of processes reads it back, each taking the chunks of its own shards (FSDP2 on
another world size, or one plain process). DCP pickles that metadata, and unpickling runs code, so
ptmzoo writes it as JSON instead (``metadata.json``), and stores tensors only (no pickled objects).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter, _StorageInfo
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    TensorProperties,
    TensorStorageMetadata,
)

from ..errors import UserError
from ..io import atomic_write_text
from .state import first_line, load_trainer_file

METADATA_FILE = "metadata.json"
DTYPES = {str(dtype): dtype for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                                          torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)}


def _metadata_to_json(metadata: Metadata) -> dict[str, Any]:
    tensors = {}
    for fqn, entry in metadata.state_dict_metadata.items():
        if not isinstance(entry, TensorStorageMetadata):
            raise TypeError(f"sharded checkpoints hold tensors only; {fqn!r} is not one")
        tensors[fqn] = {"dtype": str(entry.properties.dtype), "size": list(entry.size),
                        "chunks": [{"offsets": list(c.offsets), "sizes": list(c.sizes)} for c in entry.chunks]}
    storage = [{"fqn": index.fqn, "offset": None if index.offset is None else list(index.offset),
                "index": index.index, "path": info.relative_path, "start": info.offset, "length": info.length,
                "transforms": list(info.transform_descriptors or [])}
               for index, info in metadata.storage_data.items()]
    mappings = {fqn: list(path) for fqn, path in (metadata.planner_data or {}).items()}
    return {"format": "ptmzoo-sharded", "version": 1, "dcp_version": metadata.version, "tensors": tensors,
            "storage": storage, "planner_data": mappings}


def _metadata_from_json(data: dict[str, Any], where: str) -> Metadata:
    if data.get("format") != "ptmzoo-sharded":
        raise UserError(f"{where} is not a ptmzoo sharded checkpoint")
    tensors = {}
    for fqn, entry in data["tensors"].items():
        if entry["dtype"] not in DTYPES:
            raise UserError(f"{where}: tensor {fqn} has an unsupported dtype {entry['dtype']}")
        tensors[fqn] = TensorStorageMetadata(
            TensorProperties(dtype=DTYPES[entry["dtype"]]), torch.Size(entry["size"]),
            [ChunkStorageMetadata(torch.Size(c["offsets"]), torch.Size(c["sizes"])) for c in entry["chunks"]])
    storage = {}
    for item in data["storage"]:
        index = MetadataIndex(item["fqn"], None if item["offset"] is None else torch.Size(item["offset"]),
                              item["index"])
        storage[index] = _StorageInfo(item["path"], item["start"], item["length"], item["transforms"] or None)
    planner = {fqn: tuple(path) for fqn, path in data.get("planner_data", {}).items()}
    return Metadata(tensors, planner_data=planner, storage_data=storage, version=data.get("dcp_version"))


class JsonMetadataWriter(FileSystemWriter):
    """DCP's file-system writer with the metadata as JSON (written by the coordinating process)."""

    def finish(self, metadata: Metadata, results) -> None:
        storage = {}
        for result_list in results:
            storage.update({result.index: result.storage_data for result in result_list})
        metadata.storage_data = storage
        atomic_write_text(os.path.join(self.path, METADATA_FILE), json.dumps(_metadata_to_json(metadata)))


class JsonMetadataReader(FileSystemReader):
    def read_metadata(self, *args, **kwargs) -> Metadata:
        path = os.path.join(self.path, METADATA_FILE)
        try:
            with open(path, encoding="utf-8") as fh:
                metadata = _metadata_from_json(json.load(fh), path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path} is missing or corrupt ({exc}); the sharded checkpoint cannot be read") from None
        metadata.storage_meta = None
        return metadata


def save_sharded(directory: str, state: dict[str, torch.Tensor]) -> None:
    """Every process calls this with its (sharded) tensors; together they write one checkpoint."""
    os.makedirs(directory, exist_ok=True)
    with warnings.catch_warnings():  # one process writing alone is what we mean
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        try:
            dcp.save(state, storage_writer=JsonMetadataWriter(directory))
        except CheckpointException as exc:  # a full disk is an OSError inside DCP's writer
            raise first_failure(exc) from None


def load_sharded(directory: str, state: dict[str, torch.Tensor]) -> None:
    """Fill ``state`` (plain or DTensor tensors of the right global shapes) in place from a sharded
    checkpoint written by any number of processes. A missing, truncated or crafted checkpoint (a
    chunk that unpickles more than tensors) is one line, as for every trainer-state file."""
    load_trainer_file(directory, lambda path: _read_into(path, state))


def _read_into(directory: str, state: dict[str, torch.Tensor]) -> None:
    if not os.path.exists(os.path.join(directory, METADATA_FILE)):
        raise UserError(f"{directory} has no {METADATA_FILE}; the sharded checkpoint is incomplete")
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    try:
        with warnings.catch_warnings():  # one process reading a checkpoint of several is what we mean
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, storage_reader=JsonMetadataReader(directory), no_dist=not distributed)
    except CheckpointException as exc:  # DCP gathers every rank's failure; the first one says why
        raise first_failure(exc) from None
    except (RuntimeError, ValueError, KeyError, AssertionError) as exc:
        raise UserError(f"{directory} does not fit the model ({first_line(exc)}); the checkpoint is from another "
                        "model") from None


def first_failure(exc: CheckpointException) -> BaseException:
    """The exception one rank raised inside DCP (a BaseException wrapper with every rank's)."""
    return next(iter(exc.failures.values()))[0] if exc.failures else RuntimeError(str(exc))


def is_sharded(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, METADATA_FILE))
