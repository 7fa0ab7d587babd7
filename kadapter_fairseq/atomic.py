"""Files that are, at every moment, either absent/old or complete: written beside the target, then renamed.

A run killed mid-write (a SIGKILL, a full disk, a preempted cluster job) must never leave a
truncated file that looks finished: resume logic, caches and ``metrics.json`` markers trust that a
file which exists is whole. Every such write in the package goes through this module.

The temporary name carries the process id, so two processes writing the same target cannot mix
their bytes; ``os.replace`` is atomic on one filesystem, and the temporary file lives in the
target's directory for that reason.
"""
import contextlib
import json
import os
import shutil
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"  # unfinished writes end in this; loaders refuse them (checkpoint_utils)


def tmp_path(path: str) -> str:
    return f"{path}.{os.getpid()}{TMP_SUFFIX}"


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears only once the block succeeds."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tmp_path(path)
    kwargs = {} if "b" in mode else {"encoding": encoding}
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str):
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str, obj, indent: int = 2, sort_keys: bool = False):
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=sort_keys)
        f.write("\n")


def copy(src: str, dst: str) -> bool:
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return True


def torch_save(obj, path: str):
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """For writers that need a file name (matplotlib, third-party savers): yields a temporary
    path in the target's directory and renames it onto ``path`` when the block succeeds."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.{os.getpid()}{TMP_SUFFIX}{ext}"  # keep the extension: savers pick the format from it
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
