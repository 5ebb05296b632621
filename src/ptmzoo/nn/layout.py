"""The memory layout of the weights while decoding a few rows at a time on a CPU.

Decoding one or two rows is a chain of matrix-vector products that read every weight once per
token. On this kind of CPU (measured with bench/cpu_generate.py: gpt2-small fp32, batch 1, 2
threads) they run about 1.3x faster with each weight stored input-major ([in, out] in memory,
what GPT-2's Conv1D keeps) than output-major (nn.Linear's [out, in]); from about four rows on
the output-major kernels win. So ``use_decoding_layout`` re-lays the weights in place -- the
same Parameters with the same shapes and values, only their strides change (``w.t().contiguous().t()``)
-- and leaves them so: re-laying gpt2-small costs about a third of a second, which repeated calls
(a chat, a server) pay once. Anything that needs the usual layout (the trainer, a checkpoint
written with safetensors) calls ``use_standard_layout`` first or makes its own contiguous copy.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

MATVEC_ROWS = 2  # up to this many rows per decoding step, the input-major layout is faster
_LAYOUT = "_ptmzoo_weight_layout"  # kept in the module's __dict__: "input-major" once re-laid


@contextlib.contextmanager
def _normal_tensors():
    """New weights made under ``torch.inference_mode`` (generation runs in it) could never be
    trained again: make them outside it, without autograd."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def _weights(model: nn.Module):
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.dim() == 2:
            yield module.weight


def use_decoding_layout(model: nn.Module, rows: int) -> None:
    """The faster layout for decoding ``rows`` rows per step (CPU only; a no-op elsewhere)."""
    device = next(model.parameters()).device
    if device.type != "cpu" or model.training:
        return
    if rows <= MATVEC_ROWS:
        if model.__dict__.get(_LAYOUT) != "input-major":
            with _normal_tensors():
                for weight in _weights(model):
                    weight.data = weight.data.t().contiguous().t()
            model.__dict__[_LAYOUT] = "input-major"
    else:
        use_standard_layout(model)


def use_standard_layout(model: nn.Module) -> None:
    """Every weight contiguous again (a no-op for a model never re-laid)."""
    if model.__dict__.pop(_LAYOUT, None) is None:
        return
    with _normal_tensors():
        for weight in _weights(model):
            weight.data = weight.data.contiguous()
