"""What every Hugging Face adapter shares: one table of parameters, read in both directions.

An adapter describes a family once, as a list of ``Param`` rules (a ptmzoo key, the HF key or
keys it corresponds to, and whether the weight is transposed), plus its config mapping and the
heads it recognises. Export and import both walk the same rules, so the two directions cannot
drift apart and HF -> ptmzoo -> HF gives back identical tensors.

Two differences of layout are handled here once for all families:

* ptmzoo's attention projects queries, keys and values with one fused ``qkv`` Linear; HF BERT has
  three Linears, which are concatenated along the output dimension (in q, k, v order).
* GPT-2 stores its projections as ``Conv1D`` with the weight laid out [in, out], the transpose of
  ``nn.Linear``'s [out, in].
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ...errors import UserError
from ...models.model import PtmModel

# HF activation names <-> ptmzoo's. "gelu_new" and "gelu_pytorch_tanh" are both the tanh
# approximation (one written out, one calling torch); ptmzoo has a single "gelu_tanh".
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                  "silu": "silu", "swish": "silu", "tanh": "tanh"}
PTM_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "gelu_new": "gelu_new", "relu": "relu",
                   "silu": "silu", "tanh": "tanh"}


@dataclass(frozen=True)
class Param:
    """One ptmzoo tensor and the HF tensor(s) it is made of.

    With several HF keys, the ptmzoo tensor is their concatenation along dim 0 (fused q, k, v);
    with ``transpose``, each HF piece is the transpose of its ptmzoo slice (Conv1D weights).
    """

    ptm: str
    hf: tuple[str, ...]
    transpose: bool = False

    def to_hf(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = tensor.chunk(len(self.hf), dim=0)
        return {key: (piece.t() if self.transpose else piece).contiguous().clone()
                for key, piece in zip(self.hf, pieces)}

    def from_hf(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        pieces = [state[key].t() if self.transpose else state[key] for key in self.hf]
        return (torch.cat(pieces, dim=0) if len(pieces) > 1 else pieces[0]).contiguous()


def linear(ptm: str, *hf: str, transpose: bool = False) -> list[Param]:
    """The weight and bias of a Linear (or Conv1D with ``transpose``) and of a LayerNorm."""
    return [Param(f"{ptm}.weight", tuple(f"{h}.weight" for h in hf), transpose),
            Param(f"{ptm}.bias", tuple(f"{h}.bias" for h in hf))]


def heads_of_kind(model: PtmModel) -> dict[str, str]:
    """{head kind: head name} of a model (ptmzoo names heads after their objective or task)."""
    return {head.kind: name for name, head in model.heads.items()}


class StateDictAdapter:
    """Config and weight mapping of one family; subclasses fill in the family's specifics."""

    family: ClassVar[str]  # ptmzoo family
    model_type: ClassVar[str]  # HF config.json "model_type"
    base_prefix: ClassVar[str]  # prefix of the backbone's keys inside HF models with heads
    base_architecture: ClassVar[str]  # the HF class of the bare backbone
    architectures: ClassVar[tuple[str, ...]]  # the HF classes whose heads ptmzoo has
    ignored: ClassVar[re.Pattern] = re.compile(r"$^")  # HF buffers that old checkpoints carry

    # ---- config -------------------------------------------------------------------------------
    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        """Raise a ``UserError`` for HF settings that ptmzoo's network does not compute."""

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        """ptmzoo config dict from HF config.json (``keys``: the bare HF weight names present)."""
        raise NotImplementedError

    def config_to_hf(self, config) -> dict[str, Any]:
        raise NotImplementedError

    # ---- heads --------------------------------------------------------------------------------
    def heads_from_hf(self, hf: dict[str, Any], keys: set[str], architecture: str) -> dict[str, dict]:
        """{name: {"kind", "options"}} of the ptmzoo heads that the HF weights contain."""
        raise NotImplementedError

    def architecture(self, model: PtmModel) -> str:
        """The HF class that holds the model's backbone and heads."""
        raise NotImplementedError

    def hf_model_kwargs(self, model: PtmModel, architecture: str) -> dict[str, Any]:
        """Constructor arguments of the HF class beyond its config."""
        return {}

    def head_config_to_hf(self, model: PtmModel) -> dict[str, Any]:
        """Config entries that describe the heads (e.g. num_labels)."""
        return {}

    # ---- weights ------------------------------------------------------------------------------
    def backbone_params(self, config) -> list[Param]:
        raise NotImplementedError

    def head_params(self, model: PtmModel) -> list[Param]:
        raise NotImplementedError

    def aliases(self, model: PtmModel) -> dict[str, str]:
        """HF keys that are the same tensor as another HF key (tied weights): {alias: source}."""
        return {}

    def params(self, model: PtmModel) -> list[Param]:
        prefix = self.base_prefix if model.heads else ""
        backbone = [dataclasses.replace(p, ptm=f"backbone.{p.ptm}", hf=tuple(prefix + h for h in p.hf))
                    for p in self.backbone_params(model.config)]  # replace: keeps subclasses of Param
        return backbone + self.head_params(model)

    def absent_in_hf_class(self, model: PtmModel) -> set[str]:
        """HF keys of ``to_hf_state`` that the HF class of ``model`` has no module for (kept in
        files, left out of an in-memory model): none by default."""
        return set()

    # ---- the two directions -------------------------------------------------------------------
    def to_hf_state(self, model: PtmModel) -> dict[str, torch.Tensor]:
        """HF state dict of ``model`` without tied duplicates (what HF writes to disk)."""
        state = model.state_dict()
        out: dict[str, torch.Tensor] = {}
        for param in self.params(model):
            if param.ptm in state:  # absent parts (e.g. no pooler) are simply not written
                out.update(param.to_hf(state[param.ptm].detach().cpu()))
        return out

    def normalize_keys(self, state: dict[str, torch.Tensor], heads: bool) -> dict[str, torch.Tensor]:
        """Old checkpoints: LayerNorm gamma/beta names; backbone keys with or without the prefix."""
        out = {}
        for key, tensor in state.items():
            key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
            if self.ignored.search(key):
                continue
            bare = key.removeprefix(self.base_prefix)
            out[self.base_prefix + bare if heads and self.is_backbone_key(bare) else bare] = tensor
        return out

    def is_backbone_key(self, key: str) -> bool:
        raise NotImplementedError

    def describe_hf(self, hf: dict[str, Any], state: dict[str, torch.Tensor], where: str,
                    architecture: str | None = None) -> tuple[dict[str, Any], dict[str, dict], dict[str, torch.Tensor]]:
        """The ptmzoo config dict and heads ({name: {kind, options}}) of an HF model, and its
        state dict with normalised keys (what ``fill`` takes once the model is built)."""
        self.check_hf_config(hf, where)
        architecture = architecture or (hf.get("architectures") or [self.base_architecture])[0]
        bare = self.normalize_keys(state, heads=False)
        heads = self.heads_from_hf(hf, set(bare), architecture)
        return self.config_from_hf(hf, set(bare), where), heads, self.normalize_keys(state, heads=bool(heads))

    def fill(self, model: PtmModel, state: dict[str, torch.Tensor], where: str, architecture: str) -> PtmModel:
        """Load the (normalised) HF ``state`` into ``model`` built from ``describe_hf``, exactly."""
        for alias, source in self.aliases(model).items():
            if alias in state and source in state and not torch.equal(state[alias], state[source]):
                raise UserError(f"{where}: {alias} differs from {source}; ptmzoo ties these weights and cannot "
                                "load an untied model")
        used = set(self.aliases(model))
        ptm_state = {}
        for param in self.params(model):
            if all(key in state for key in param.hf):
                ptm_state[param.ptm] = param.from_hf(state)
                used.update(param.hf)
        unplaced = sorted(set(state) - used)
        if unplaced:
            why = (f"unexpected in {architecture}" if architecture in self.architectures else
                   f"{architecture} is not supported; ptmzoo reads {', '.join(self.architectures)}")
            raise UserError(f"{where}: weight {unplaced[0]} has no place in a ptmzoo {self.family} model ({why})")
        self.load_state(model, ptm_state, where)
        return model

    def export_parts(self, pretrained) -> dict[str, Any]:
        """{sub-directory: Pretrained} when a model is written as several HF directories (ELECTRA's
        generator and discriminator); {} for one."""
        return {}

    @staticmethod
    def load_state(model: PtmModel, state: dict[str, torch.Tensor], where: str) -> None:
        """Load strictly, except for tensors that are tied to one that was loaded."""
        try:
            missing, _ = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
            raise UserError(f"{where}: weights do not fit config.json: {detail}") from None
        tensors = model.state_dict(keep_vars=True)
        owners: dict[int, set[str]] = {}
        for name, tensor in tensors.items():
            owners.setdefault(id(tensor), set()).add(name)
        missing = [k for k in missing if not owners[id(tensors[k])] & set(state)]
        if missing:
            raise UserError(f"{where}: no weight for {missing[0]} (the HF checkpoint is incomplete)")


class SingleLMHeadAdapter(StateDictAdapter):
    """Families with two HF classes: the bare model and the model with its LM head (a ptmzoo head of
    kind ``lm_head_kind``); no other head converts."""

    lm_head_kind: ClassVar[str]  # "clm", "seq2seq_lm"
    display_name: ClassVar[str]  # in messages: "gpt2", "T5", "BART"
    lm_key: ClassVar[str]  # a key only the HF class with the LM head has (a tied head is not on disk)
    lm_architecture: ClassVar[str]

    def heads_from_hf(self, hf: dict[str, Any], keys: set[str], architecture: str) -> dict[str, dict]:
        if self.lm_key in keys or architecture == self.lm_architecture:
            return {self.lm_head_kind: {"kind": self.lm_head_kind}}
        return {}

    def architecture(self, model: PtmModel) -> str:
        kinds = set(heads_of_kind(model))
        if not kinds:
            return self.base_architecture
        if kinds == {self.lm_head_kind}:
            return self.lm_architecture
        raise UserError(f"heads {', '.join(sorted(kinds))} have no Hugging Face {self.display_name} class "
                        f"(supported: none, {self.lm_head_kind})")


class EncoderDecoderAdapter(SingleLMHeadAdapter):
    """T5 and BART: shared embeddings + encoder + decoder, and at most one head, the LM
    (``seq2seq_lm``) of the HF ``...ForConditionalGeneration`` class."""

    lm_head_kind = "seq2seq_lm"

    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("shared.", "encoder.", "decoder."))
