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
import contextlib
import hashlib
import os
import pickle
import re
import shutil
import zipfile
from typing import Dict, Optional

import torch

from .errors import CheckpointError

ADAPTER_FILE_FORMAT = "kadapter-fairseq/adapters"
ADAPTER_FILE_VERSION = 1
TMP_SUFFIX = ".tmp"  # unfinished writes; never loaded


def install_safe_globals():
    """Let fairseq's own loaders read checkpoints that store an argparse.Namespace."""
    torch.serialization.add_safe_globals([argparse.Namespace])


def atomic_copy(src, dst):
    """Copy ``src`` to ``dst`` so that ``dst`` is at every moment either the old file or the
    complete new one: through ``<dst>.tmp`` and ``os.replace``."""
    tmp = f"{dst}.tmp"
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    return True


def install_atomic_checkpoint_copies():
    """fairseq writes a checkpoint atomically (``.tmp`` + rename) but then *copies* it to
    ``checkpoint_last.pt`` / ``checkpoint_best.pt`` with ``shutil.copyfile``; a run killed
    during that copy would leave a truncated ``checkpoint_last.pt`` and could not resume.
    ``fairseq.checkpoint_utils`` alone gets a PathManager whose local copies are atomic."""
    from fairseq import checkpoint_utils as fairseq_checkpoint_utils
    from fairseq.file_io import PathManager

    if getattr(fairseq_checkpoint_utils.PathManager, "atomic_local_copies", False):
        return

    class AtomicCopyPathManager(PathManager):
        atomic_local_copies = True

        @staticmethod
        def copy(src_path, dst_path, overwrite=False):
            if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
                return PathManager.copy(src_path, dst_path, overwrite=overwrite)
            if not overwrite and os.path.exists(dst_path):
                return False
            return atomic_copy(src_path, dst_path)

    fairseq_checkpoint_utils.PathManager = AtomicCopyPathManager


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
        with torch.serialization.safe_globals(_third_party_safe_types()):
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
    "num_classes", "kwargs", "state_dict"}}`` or None. Written to a temporary
    file first so an interrupted save never leaves a truncated checkpoint.
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
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # the name is unique to this process, so even two writers could not mix their bytes;
    # under DDP only the saving rank writes (fairseq calls task.post_save there alone)
    tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def load_adapter_file(path):
    """Read an adapter checkpoint written by ``save_adapter_file``; validates its layout."""
    from .modules.adapter import AdapterArchConfig

    if os.fspath(path).endswith(TMP_SUFFIX):
        complete = re.sub(r"(\.[0-9]+)?\.tmp$", "", os.fspath(path))
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
