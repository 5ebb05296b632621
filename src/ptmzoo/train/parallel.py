"""The parallelism seam: ``train.parallel`` = none | ddp | fsdp, applied to the training step here,
so the Trainer never branches on it.

* ``none``: one process; ``ddp``: ``DistributedDataParallel`` (every process holds the whole model);
  ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) -- each transformer layer, then the
  whole step, sharded across processes, for models that do not fit one device. ``auto``: ddp under
  torchrun, none otherwise.
* ``train.activation_checkpointing``: each layer's activations are recomputed in the backward
  pass instead of kept (less memory, about a third more compute), in any mode.
* Checkpoints: a sharded run writes its weights as a sharded checkpoint (``train.sharded``:
  ``model/``), the others ``model.safetensors``; the optimizer state is always written sharded by
  parameter name (``trainer_state/optimizer/``) with its settings as JSON, so that any run resumes
  from any checkpoint -- FSDP on 2 processes from a 1-process run and back -- and ``ptmzoo.load``
  reads either as one model.

The order follows torchtitan's ``parallelize``: activation checkpointing, then sharding per layer,
then the root; ``torch.compile`` (Trainer) comes last.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

from ..checkpoint import SHARDED_WEIGHTS_DIR
from ..errors import UserError
from ..io import atomic_write_json, read_json
from .distributed import DistEnv
from .sharded import is_sharded, load_sharded, save_sharded
from .state import load_trainer_file

MODES = ("auto", "none", "ddp", "fsdp")
OPTIMIZER_DIR = "optimizer"  # in trainer_state/
OPTIMIZER_GROUPS_FILE = "optimizer_groups.json"
SCHEDULER_FILE = "scheduler.json"


def layers_of(module: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a network: the items of its ``ModuleList``s (not nested in another
    block), each once -- ALBERT's shared layer is one module used by every position."""
    found: list[nn.Module] = []
    seen: set[int] = set()

    def visit(node: nn.Module) -> None:
        for child in node.children():
            if isinstance(child, nn.ModuleList):
                for block in child:
                    if id(block) not in seen:
                        seen.add(id(block))
                        found.append(block)
            else:
                visit(child)

    visit(module)
    return found


def checkpoint_activations(block: nn.Module) -> None:
    """Recompute ``block``'s activations in the backward pass (its forward runs under
    ``torch.utils.checkpoint``; parameter names and hooks stay as they are)."""
    forward = block.forward

    def recomputed(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = recomputed


class Parallelism:
    def __init__(self, mode: str, env: DistEnv, activation_checkpointing: bool = False):
        if mode not in MODES:
            raise UserError(f"train.parallel must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "auto":
            mode = "ddp" if env.distributed else "none"
        if mode != "none" and not env.distributed:
            raise UserError(f"train.parallel={mode} needs several processes; launch with torchrun "
                            "(e.g. torchrun --nproc_per_node 2 -m ptmzoo pretrain ...)")
        if mode == "none" and env.distributed:
            raise UserError("train.parallel=none runs one process, but this run has "
                            f"{env.world_size}; use ddp or fsdp under torchrun")
        self.mode, self.env, self.activation_checkpointing = mode, env, activation_checkpointing

    @property
    def sharded(self) -> bool:
        return self.mode == "fsdp"

    def wrap(self, step: nn.Module, model: nn.Module) -> nn.Module:
        """The module the Trainer calls: ``step`` (which holds ``model``) with the chosen parallelism."""
        if self.activation_checkpointing:
            for block in layers_of(model.backbone):
                checkpoint_activations(block)
        if self.mode == "ddp":
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(step, device_ids=ids)
        if self.mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            uses = {}
            for block in model.modules():  # a block used in several places (shared) is sharded with the root
                for child in block.children():
                    uses[id(child)] = uses.get(id(child), 0) + 1
            for objective in step.objectives:
                if not objective.shardable:
                    raise UserError(f"objective '{objective.name}' calls parts of the model outside its forward pass, "
                                    "which FSDP cannot shard; use train.parallel=ddp")
            for block in layers_of(model):
                if uses.get(id(block), 0) == 1:
                    fully_shard(block)
            fully_shard(model)  # the model's own forward gathers its weights: evaluation and prediction too
            fully_shard(step)  # the objectives' networks (a teacher)
        return step

    def gradient_sync(self, wrapped: nn.Module, sync: bool):
        """Accumulating micro-batches: gradients are reduced across processes on the last one only."""
        if self.mode == "ddp" and not sync:
            return wrapped.no_sync()
        if self.mode == "fsdp":
            wrapped.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if isinstance(norm, DTensor):  # FSDP: the norm of sharded gradients
            norm = norm.full_tensor()
        return float(norm)

    # ---- checkpoints --------------------------------------------------------------------------
    def save_weights(self, directory: str, model: nn.Module) -> None:
        """A sharded run's weights (all processes write their shards); others write model.safetensors."""
        if self.sharded:
            save_sharded(os.path.join(directory, SHARDED_WEIGHTS_DIR), get_model_state_dict(model))

    def full_weights(self, model: nn.Module) -> dict[str, torch.Tensor] | None:
        """The whole weights of a sharded model, gathered on the CPU (every process calls this;
        the main one gets them); None when the model is not sharded (it is whole already)."""
        if not self.sharded:
            return None
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def save_optimizer(self, state_dir: str, model: nn.Module, optimizer, scheduler) -> None:
        state = get_optimizer_state_dict(model, optimizer)
        save_sharded(os.path.join(state_dir, OPTIMIZER_DIR), flatten(state["state"]))
        if self.env.is_main:
            atomic_write_json(os.path.join(state_dir, OPTIMIZER_GROUPS_FILE), state["param_groups"])
            atomic_write_json(os.path.join(state_dir, SCHEDULER_FILE), scheduler.state_dict())

    def load_weights(self, checkpoint_dir: str, model: nn.Module) -> None:
        sharded = os.path.join(checkpoint_dir, SHARDED_WEIGHTS_DIR)
        if is_sharded(sharded):
            state = get_model_state_dict(model)
            load_sharded(sharded, state)
            set_model_state_dict(model, state)
            return
        full = load_trainer_file(os.path.join(checkpoint_dir, "model.safetensors"), lambda p: load_file(p, device="cpu"))
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, strict=False))

    def load_optimizer(self, state_dir: str, model: nn.Module, optimizer, scheduler) -> None:
        groups_file = os.path.join(state_dir, OPTIMIZER_GROUPS_FILE)
        legacy = os.path.join(state_dir, "optimizer.pt")
        if not os.path.exists(groups_file) and os.path.exists(legacy) and not self.sharded:
            # written by ptmzoo 0.1 (format 1): tensors and numbers only, so weights_only reads it safely
            load_trainer_file(legacy, lambda p: optimizer.load_state_dict(
                torch.load(p, map_location=self.env.device, weights_only=True)))
            load_trainer_file(os.path.join(state_dir, "scheduler.pt"),
                              lambda p: scheduler.load_state_dict(torch.load(p, weights_only=True)))
            return
        state = get_optimizer_state_dict(model, optimizer)  # state tensors of the right shapes, to fill
        flat = flatten(state["state"])
        load_trainer_file(os.path.join(state_dir, OPTIMIZER_DIR), lambda p: load_sharded(p, flat))
        groups = load_trainer_file(groups_file, read_json)
        for group in groups:  # JSON gives lists; torch keeps betas as a tuple
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
        set_optimizer_state_dict(model, optimizer, {"state": unflatten(flat), "param_groups": groups})
        load_trainer_file(os.path.join(state_dir, SCHEDULER_FILE), lambda p: scheduler.load_state_dict(read_json(p)))


def flatten(state: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
    """{param: {name: tensor}} -> {"param/name": tensor} (a flat dict of tensors for DCP)."""
    return {f"{param}/{name}": value for param, entries in state.items() for name, value in entries.items()}


def unflatten(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        param, name = key.rsplit("/", 1)
        state.setdefault(param, {})[name] = value
    return state

