"""Which floating-point type a run computes in, and whether this machine runs it fast.

``fp32`` everywhere; ``bf16`` where the hardware has bf16 matrix units (CPUs with AMX or
AVX512-BF16, GPUs of compute capability 8.0 or newer). Elsewhere torch still runs bf16, but by
emulation, slower than fp32: ``resolve("auto")`` then falls back to fp32 and says why.
"""
from typing import Tuple

from .errors import ConfigError

CHOICES = ("fp32", "bf16", "auto")


def cpu_has_fast_bf16() -> bool:
    from .provenance import cpu_flags

    flags = set(cpu_flags())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def gpu_has_fast_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def resolve(requested: str, on_gpu: bool = False) -> Tuple[str, str]:
    """``(dtype, reason)``: ``dtype`` is ``fp32`` or ``bf16``; ``reason`` says why, in words."""
    if requested not in CHOICES:
        raise ConfigError(f"precision: expected one of {', '.join(CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested, "asked for"
    fast = gpu_has_fast_bf16() if on_gpu else cpu_has_fast_bf16()
    if fast:
        return "bf16", "this " + ("GPU" if on_gpu else "CPU") + " has bf16 matrix units"
    what = "GPU (compute capability < 8.0)" if on_gpu else "CPU (no amx_bf16 or avx512_bf16 flag)"
    return "fp32", f"fell back to fp32: this {what} would emulate bf16, slower than fp32"
