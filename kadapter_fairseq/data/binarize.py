"""Binarize BPE-piece files with ``fairseq-preprocess``, against the base's own dict.txt."""
import os
import shutil
import subprocess
import sys

from ..errors import KAdapterError


def binarize(pieces_by_split, dest_dir, dict_path, workers=1):
    """``pieces_by_split``: ``{split: path}`` of text files with one line of space-separated
    pieces per example. Writes ``dest_dir/{split}.bin/.idx`` and ``dest_dir/dict.txt``."""
    if not os.path.isfile(dict_path):
        raise KAdapterError(f"dictionary not found: {dict_path}")
    os.makedirs(dest_dir, exist_ok=True)
    args = [sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict", dict_path,
            "--destdir", dest_dir, "--workers", str(workers), "--dataset-impl", "mmap"]
    flags = {"train": "--trainpref", "valid": "--validpref", "test": "--testpref"}
    extra = {}
    for split, path in pieces_by_split.items():
        if not os.path.isfile(path):
            raise KAdapterError(f"pieces file not found: {path}")
        if split in flags:
            args += [flags[split], _prefix(path)]
        else:
            extra[split] = path
    if not any(f in args for f in flags.values()):
        # fairseq-preprocess needs a train split: binarize a non-standard split under its own name
        split, path = extra.popitem()
        args += ["--trainpref", _prefix(path)]
        _run(args, dest_dir)
        _rename(dest_dir, "train", split)
    else:
        _run(args, dest_dir)
    for split, path in extra.items():
        binarize({split: path}, dest_dir, dict_path, workers)
    return dest_dir


def _prefix(path):
    # fairseq-preprocess takes "prefix" + ".<lang>"; with --only-source and no lang the prefix is the file
    return path


def _run(args, dest_dir):
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise KAdapterError(f"fairseq-preprocess failed for {dest_dir}:\n{tail}")
    # fairseq-preprocess reports replaced (unknown) tokens: they mean the wrong dict or BPE
    return proc


def _rename(dest_dir, old, new):
    for ext in (".bin", ".idx"):
        shutil.move(os.path.join(dest_dir, old + ext), os.path.join(dest_dir, new + ext))
