"""8-bit quantization of the Linear layers (``ptmzoo quantize``), stored as int8 in safetensors.

Weights are quantized symmetrically to int8: ``q = clamp(round(w / s), -127, 127)`` with one scale
per output row, ``s = max |w_row| / 127`` (per tensor for QAT, as Q8BERT), so a weight comes back
as ``q * s`` within ``s / 2``. ``model.safetensors`` holds ``weight`` (int8), ``weight_scale``
(float32) and the float bias of each quantized layer; ``ptmzoo.json`` lists the layers under
``quantization``, and ``ptmzoo.load`` (``apply_quantization``) rebuilds them before reading the
weights, so a quantized checkpoint works with ``evaluate``, ``predict`` and ``generate``. The
forward pass by ``mode``:

* ``dynamic`` (``--method dynamic-int8``): activations are quantized on the fly and the product is
  an int8 GEMM -- on CPU the FBGEMM/oneDNN kernel behind ``torch.ao``'s dynamic quantization (the
  packed weights are built from the stored int8 ones at the first call); elsewhere per-row
  activation scales and ``torch._int_mm``.
* ``weight`` (``--method weight-int8``): int8 weights, float activations: on CPU the
  ``_weight_int8pack_mm`` kernel (bfloat16 activations; it reads a quarter of the fp32 weight
  bytes, which is what limits batch-1 decoding), elsewhere the weights dequantized per call.
* ``static`` (``--method qat``): Q8BERT (Zafrir et al., 2019): fine-tuning with fake quantization
  (``FakeQuantLinear``: weights and inputs rounded to 8 bits in the forward pass, gradients passed
  straight through; the input range is an exponential moving average of max |x|), then the
  learned input scale is stored and inference computes exactly the trained function: inputs
  rounded with that scale, an int8 x int8 product, rescaled.

In encoders the embedding tables become int8 too (``Int8Embedding``: one scale per row, rows
dequantized when looked up) -- in a small model they are most of the bytes. A table tied to an output layer
(MLM and LM heads) stays in float with that layer: quantizing them would untie them.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

METHODS = ("dynamic-int8", "weight-int8", "qat")
MODES = {"dynamic-int8": "dynamic", "weight-int8": "weight", "qat": "static"}
QMAX = 127


def quantize_weight(weight: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 weights and their float32 scales ([out] per row, or one per tensor repeated)."""
    w = weight.detach().float()
    absmax = w.abs().amax(dim=1) if per_channel else w.abs().max().expand(w.shape[0])
    scale = (absmax / QMAX).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale.contiguous()


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale[:, None]


def fake_quantize(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x rounded to the int8 grid of ``scale`` in the forward pass, identity gradient (STE)."""
    q = torch.round(x / scale).clamp(-QMAX, QMAX) * scale
    return x + (q - x).detach()


def _int8_engine() -> bool:
    return torch.backends.quantized.engine in ("x86", "fbgemm", "onednn", "qnnpack")


_WEIGHT_KERNEL: dict[str, bool] = {}


def _weight_kernel(device: torch.device) -> bool:
    """Whether ``_weight_int8pack_mm`` runs on this device (probed once per device type)."""
    if device.type not in _WEIGHT_KERNEL:
        try:
            x = torch.ones(1, 32, dtype=torch.bfloat16, device=device)
            torch.ops.aten._weight_int8pack_mm(x, torch.ones(8, 32, dtype=torch.int8, device=device),
                                               torch.ones(8, dtype=torch.bfloat16, device=device))
            _WEIGHT_KERNEL[device.type] = device.type == "cpu"  # on GPUs dequantizing is as fast
        except (RuntimeError, NotImplementedError):
            _WEIGHT_KERNEL[device.type] = False
    return _WEIGHT_KERNEL[device.type]


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights (``mode``: dynamic, weight or static; see the module)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, mode: str = "dynamic"):
        super().__init__()
        if mode not in MODES.values():
            raise ValueError(f"unknown int8 mode {mode!r}")
        self.in_features, self.out_features, self.mode = in_features, out_features, mode
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        if mode == "static":
            self.register_buffer("input_scale", torch.ones(()))
        self._packed: tuple[tuple, Any] | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str, per_channel: bool = True,
                    input_scale: torch.Tensor | None = None) -> Int8Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, mode)
        q, scale = quantize_weight(linear.weight, per_channel)
        module.weight.copy_(q)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach())
        if mode == "static":
            module.input_scale.copy_(input_scale)
        return module.to(linear.weight.device)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"

    def dequantized(self) -> torch.Tensor:
        return dequantize(self.weight, self.weight_scale)

    def _packed_weight(self):
        """FBGEMM/oneDNN's packed weights, built from the stored int8 ones (rebuilt when they change)."""
        key = (self.weight.data_ptr(), self.weight_scale.data_ptr(), None if self.bias is None else self.bias.data_ptr(),
               self.weight._version, self.weight_scale._version)
        if self._packed is None or self._packed[0] != key:
            with warnings.catch_warnings():  # quantized tensors are only the kernel's input format here
                warnings.simplefilter("ignore")
                qweight = torch._make_per_channel_quantized_tensor(
                    self.weight, self.weight_scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0)
                packed = torch.ops.quantized.linear_prepack(qweight, self.bias)
            self._packed = (key, packed)
        return self._packed[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.mode == "dynamic":
            y = self._dynamic(x2)
        elif self.mode == "weight":
            if _weight_kernel(x.device):
                y = torch.ops.aten._weight_int8pack_mm(x2.to(torch.bfloat16), self.weight,
                                                       self.weight_scale.to(torch.bfloat16)).to(x.dtype)
            else:
                y = F.linear(x2, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(y.dtype)
        else:
            scale = self.input_scale.float()
            xq = torch.round(x2.float() / scale).clamp(-QMAX, QMAX)
            y = self._int_product(xq, scale.expand(xq.shape[0], 1))
        return y.reshape(*shape[:-1], self.out_features)

    def _dynamic(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and _int8_engine():
            reduce_range = torch.backends.quantized.engine in ("x86", "fbgemm")  # 7-bit activations, as torch.ao
            return torch.ops.quantized.linear_dynamic(x, self._packed_weight(), reduce_range)
        scale = (x.float().abs().amax(-1, keepdim=True) / QMAX).clamp(min=1e-12)  # one scale per row
        return self._int_product(torch.round(x.float() / scale).clamp(-QMAX, QMAX), scale).to(x.dtype)

    def _int_product(self, xq: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """(x_q @ w_q^T) * x_scale * w_scale + bias for integer-valued x_q ([N, in] float)."""
        try:
            acc = torch._int_mm(xq.to(torch.int8), self.weight.t()).float()
        except RuntimeError:  # no int8 GEMM here: the same integers in float32 (exact below 2^24)
            acc = xq @ self.weight.float().t()
        y = acc * x_scale * self.weight_scale
        return y + self.bias if self.bias is not None else y


class Int8Embedding(nn.Module):
    """An embedding table in int8 with one scale per row (symmetric, like the weights above): rows
    are looked up and dequantized, so the table takes a quarter of the bytes. ``weight`` is the
    dequantized table, for code that reads a table directly (BERT's segment-0 row)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.register_buffer("qweight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        module = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx)
        q, scale = quantize_weight(embedding.weight)
        module.qweight.copy_(q)
        module.weight_scale.copy_(scale)
        return module.to(embedding.weight.device)

    @property
    def weight(self) -> torch.Tensor:
        return dequantize(self.qweight, self.weight_scale)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.qweight).float() * self.weight_scale[ids][..., None]


class FakeQuantLinear(nn.Linear):
    """Q8BERT's training-time Linear: 8-bit fake quantization of the weight (per tensor) and of the
    input (scale from an EMA of max |x|, updated in training), straight-through gradients."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, ema_decay: float = 0.9999):
        super().__init__(in_features, out_features, bias)
        self.ema_decay = ema_decay
        self.register_buffer("input_absmax", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FakeQuantLinear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None)
        module.load_state_dict(linear.state_dict(), strict=False)
        return module.to(linear.weight.device)

    def input_scale(self) -> torch.Tensor:
        return (self.input_absmax / QMAX).clamp(min=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                current = x.detach().abs().max().float()
                decay = self.ema_decay if self.steps > 0 else 0.0  # the first batch sets the range
                self.input_absmax.mul_(decay).add_((1 - decay) * current)
                self.steps += 1
        w_scale = (self.weight.detach().abs().max() / QMAX).clamp(min=1e-12)
        weight = fake_quantize(self.weight, w_scale)
        return F.linear(fake_quantize(x, self.input_scale().to(x.dtype)), weight, self.bias)


# ---------------------------------------------------------------------------------- whole models
def quantizable(model: nn.Module) -> list[str]:
    """Names of the Linear layers to quantize: all of them except those whose weight is shared
    (the LM heads tied to the input embeddings)."""
    owners: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        owners[id(param)] = owners.get(id(param), 0) + 1
    return [name for name, module in model.named_modules()
            if type(module) in (nn.Linear, FakeQuantLinear) and owners.get(id(module.weight), 0) == 1]


def quantizable_embeddings(model: nn.Module) -> list[str]:
    """Names of the embedding tables to quantize: in encoders, those whose weight is not shared (a
    table tied to an LM head stays float, as the head does). Decoders and encoder-decoders keep
    theirs in float: generation sizes its caches by the token table's dtype."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or backbone.causal or backbone.is_encoder_decoder:
        return []
    owners: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        owners[id(param)] = owners.get(id(param), 0) + 1
    return [name for name, module in model.named_modules()
            if type(module) is nn.Embedding and owners.get(id(module.weight), 0) == 1]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize_model(model: nn.Module, method: str) -> dict[str, Any]:
    """Replace the Linear layers of ``model`` (in place) by int8 ones; returns the ``quantization``
    entry of ``ptmzoo.json``. After QAT (``FakeQuantLinear`` layers) the method is ``qat``."""
    if method not in METHODS:
        raise UserError(f"unknown quantization method '{method}' (choose from {', '.join(METHODS)})")
    mode = MODES[method]
    names = quantizable(model)
    if not names:
        raise UserError("the model has no Linear layer to quantize")
    for name in names:
        linear = model.get_submodule(name)
        if method == "qat":
            if not isinstance(linear, FakeQuantLinear):
                raise UserError("--method qat quantizes a model trained with fake quantization (`ptmzoo quantize "
                                "--method qat --train ...`)")
            quantized = Int8Linear.from_linear(linear, mode, per_channel=False, input_scale=linear.input_scale())
        else:
            quantized = Int8Linear.from_linear(linear, mode)
        _replace(model, name, quantized)
    embeddings = quantizable_embeddings(model)
    for name in embeddings:
        _replace(model, name, Int8Embedding.from_embedding(model.get_submodule(name)))
    return {**describe(method, names), "embeddings": embeddings}


def describe(method: str, names: list[str]) -> dict[str, Any]:
    scheme = {"dynamic-int8": "int8 weights (symmetric, per output row), activations quantized per call",
              "weight-int8": "int8 weights (symmetric, per output row), float activations",
              "qat": "int8 weights (symmetric, per tensor) and inputs (learned scale), trained with fake quantization"}
    return {"method": method, "mode": MODES[method], "bits": 8, "scheme": scheme[method], "modules": names}


def _listed_module(model: nn.Module, name: str, kind: type[nn.Module], what: str) -> nn.Module:
    """The module a ``quantization`` entry names, which must exist and be of ``kind``."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise UserError(f"ptmzoo.json quantizes {name}, which the model does not have; the checkpoint is damaged") from None
    if not isinstance(module, kind):
        raise UserError(f"ptmzoo.json quantizes {name}, which is not {what}")
    return module


def apply_quantization(model: nn.Module, entry: dict[str, Any]) -> None:
    """Rebuild the int8 layers a checkpoint's ``quantization`` entry lists (before its weights load)."""
    mode = entry.get("mode")
    if mode not in MODES.values():
        raise UserError(f"unknown quantization mode {mode!r} in ptmzoo.json; the checkpoint may come from a newer ptmzoo")
    for name in entry.get("modules", []):
        linear = _listed_module(model, name, nn.Linear, "a Linear layer")
        _replace(model, name, Int8Linear(linear.in_features, linear.out_features, linear.bias is not None, mode))
    for name in entry.get("embeddings", []):
        table = _listed_module(model, name, nn.Embedding, "an embedding table")
        _replace(model, name, Int8Embedding(table.num_embeddings, table.embedding_dim, table.padding_idx))


def prepare_qat(model: nn.Module) -> list[str]:
    """Swap the quantizable Linear layers for ``FakeQuantLinear`` (Q8BERT's training); their names."""
    names = quantizable(model)
    for name in names:
        _replace(model, name, FakeQuantLinear.from_linear(model.get_submodule(name)))
    return names
