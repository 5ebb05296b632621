"""What ``train.precision: auto`` means on this machine: bf16 autocast where the hardware runs
it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 / AMX), float32 elsewhere.

``PTMZOO_CPU_BF16=0`` (or ``1``) overrides the CPU detection, e.g. to keep a test suite's
numerics the same on every CPU; ``train.precision: fp32`` or ``bf16`` is the setting for a run.
"""

from __future__ import annotations

import contextlib
import os


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (AVX512-BF16 / AMX), where
    bf16 autocast runs matrix products several times faster than float32."""
    forced = os.environ.get("PTMZOO_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device) -> str:
    """``fp32`` or ``bf16``: what a run with ``train.precision`` = ``precision`` computes in."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_bf16_is_fast() else "fp32"
    return "fp32"


def autocast_context(precision: str, device):
    """A factory of the autocast context of a forward pass under ``precision``."""
    if resolve_precision(precision, device) == "bf16":
        import torch

        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
