"""Where a number comes from: the machine, the libraries, the precision and the thread count.

Two runs of the same command can differ because the machine differs (another CPU's kernels,
another thread count, another torch) or because something is nondeterministic. Every run's
``metrics.json`` and every ``results.json`` carry ``collect()``'s record, so the first cause can be
told from the second by reading the files.
"""
import os
import platform
from typing import Dict, List, Optional

# CPU flags that decide which matmul kernels run (and so the last bits of a result)
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8", "fma")


def _cpuinfo() -> Dict[str, str]:
    out: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if ":" not in line:
                    if out:
                        break  # the first processor's block is enough
                    continue
                key, value = (s.strip() for s in line.split(":", 1))
                out.setdefault(key, value)
    except OSError:
        pass
    return out


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The flags of ``RELEVANT_FLAGS`` this CPU has (all of them are in /proc/cpuinfo on Linux)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in RELEVANT_FLAGS if f in flags]


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    names = {"fairseq": ("fairseq-fixed", "fairseq")}.get(module, (module,))
    for name in names:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            continue
    return None


def device_record(device: Optional[str] = None) -> dict:
    """The device a run computed on: the GPU's name, or the CPU's model and kernel-relevant flags."""
    import torch

    on_gpu = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    if on_gpu:
        index = torch.device(device or "cuda").index or 0
        return {"type": "cuda", "name": torch.cuda.get_device_name(index), "cuda": torch.version.cuda}
    return {"type": "cpu", "model": cpu_model(), "flags": cpu_flags(), "cores": os.cpu_count()}


def collect(dtype: str = "fp32", threads: Optional[int] = None, device: Optional[str] = None) -> dict:
    """``{"dtype", "threads", "torch", "fairseq", "python", "device": {...}}`` for a run's record."""
    import torch

    return {
        "dtype": dtype,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "fairseq": _version("fairseq"),
        "python": platform.python_version(),
        "device": device_record(device),
    }
