"""Loading and saving checkpoints safely.

* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. fairseq's
  released ``roberta.*/model.pt`` files hold an ``argparse.Namespace``; we
  allow-list exactly that type (and, for our own reads of third-party files,
  numpy scalars), never the global unsafe switch.
* Adapter-only checkpoints are small self-describing files: each adapter's
  architecture, its weights, optionally the fusion and head weights, and the
  fingerprint of the base they were trained on.
"""
import argparse
import hashlib
import os
import pickle
import re
import zipfile
from typing import Dict, Optional

import torch

from . import atomic
from .errors import CheckpointError

ADAPTER_FILE_FORMAT = "kadapter-fairseq/adapters"
ADAPTER_FILE_VERSION = 1
# what atomic.py names an unfinished write of TARGET: TARGET.<pid>.tmp, TARGET-without-ext.<pid>.tmp.<ext>
# (and TARGET.tmp, from versions before it)
_TMP = re.escape(atomic.TMP_SUFFIX)
_UNFINISHED = re.compile(rf"^(?P<stem>.+?)(?:(?:\.[0-9]+)?{_TMP}|\.[0-9]+{_TMP}(?P<ext>\.[A-Za-z0-9]+))$")


def unfinished_write_target(path) -> Optional[str]:
    """The file an interrupted atomic write of ``path`` was meant to become, or None when ``path``
    is not such a temporary file."""
    m = _UNFINISHED.match(os.fspath(path))
    return None if m is None else m.group("stem") + (m.group("ext") or "")


def install_safe_globals():
    """Let fairseq's own loaders read checkpoints that store an argparse.Namespace."""
    torch.serialization.add_safe_globals([argparse.Namespace])


def _third_party_safe_types():
    import numpy as np

    types = [argparse.Namespace, np.dtype, np.float64, np.float32, np.int64]
    try:  # numpy 2 moved the scalar reconstructor
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core.multiarray import scalar
    types.append(scalar)
    types.extend(type(np.dtype(t)) for t in ("float64", "float32", "int64"))
    return types


def load_file(path, what="checkpoint"):
    """``torch.load`` on CPU with the narrow allow-list; failures become ``CheckpointError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path}")
    try:
        # torch's safe_globals context removes on exit every type it was given, also those that were
        # allowed before it (install_safe_globals' Namespace, which fairseq's own loaders need later):
        # give it only what is not allowed already
        allowed = set(torch.serialization.get_safe_globals())
        with torch.serialization.safe_globals([t for t in _third_party_safe_types() if t not in allowed]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, RuntimeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path}: the file is truncated, corrupt or not a torch checkpoint ({msg})") from e


# ---------------------------------------------------------------------------------------------
# base-model fingerprints


def fingerprint_weights(state_dict: Dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint_dictionary(dictionary) -> str:
    return hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()


def short(fp: Optional[dict]) -> str:
    if not fp:
        return "<none>"
    return f"weights {fp['weights'][:12]}, dictionary {fp['dictionary'][:12]} ({fp.get('summary', '?')})"


def same_base(a: Optional[dict], b: Optional[dict]) -> bool:
    return a is None or b is None or (a["weights"] == b["weights"] and a["dictionary"] == b["dictionary"])


# ---------------------------------------------------------------------------------------------
# adapter-only files


def save_adapter_file(path, adapters, fusion=None, heads=None, base_fingerprint=None):
    """Write an adapter checkpoint.

    ``adapters``: ``{name: (AdapterArchConfig, state_dict)}``; ``fusion``:
    ``{"mode", "names", "state_dict"}`` or None; ``heads``: ``{name: {"type",
    "num_classes", "kwargs", "state_dict"}}`` or None. Written through ``atomic``, so an
    interrupted save never leaves a truncated checkpoint.
    """
    payload = {
        "format": ADAPTER_FILE_FORMAT,
        "version": ADAPTER_FILE_VERSION,
        "adapters": {
            name: {"config": cfg.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in sd.items()}}
            for name, (cfg, sd) in adapters.items()
        },
        "fusion": fusion,
        "heads": heads,
        "base_fingerprint": base_fingerprint,
    }
    # under DDP only the saving rank writes (fairseq calls task.post_save there alone)
    atomic.torch_save(payload, os.fspath(path))


def load_adapter_file(path):
    """Read an adapter checkpoint written by ``save_adapter_file``; validates its layout."""
    from .modules.adapter import AdapterArchConfig

    complete = unfinished_write_target(path)
    if complete is not None:
        raise CheckpointError(
            f"{path} is a temporary file from an adapter save that did not finish (the process was killed while "
            f"writing): load {complete} instead, which is always complete"
        )
    state = load_file(path, "adapter checkpoint")
    if not isinstance(state, dict) or state.get("format") != ADAPTER_FILE_FORMAT:
        hint = ""
        if isinstance(state, dict) and any(str(k).startswith("adapter.") for k in state):
            hint = " It looks like an adapter from the authors' release: convert it with `kadapter-convert kadapter-adapter`."
        elif isinstance(state, dict) and "model" in state:
            hint = " It looks like a full fairseq checkpoint: export its adapters with `kadapter-export`."
        raise CheckpointError(f"{path} is not a kadapter-fairseq adapter checkpoint.{hint}")
    if state.get("version", 0) > ADAPTER_FILE_VERSION:
        raise CheckpointError(f"{path} was written by a newer kadapter-fairseq (format version {state['version']})")
    out = dict(state)
    out["adapters"] = {
        name: (AdapterArchConfig.from_dict(entry["config"]), entry["state_dict"]) for name, entry in state["adapters"].items()
    }
    return out
