"""Binarize BPE-piece files with fairseq's preprocessing, against the base's own dict.txt.

Runs ``fairseq_cli.preprocess`` in-process (a subprocess per split would pay
fairseq's import time every time) and reports how many pieces fell back to
``<unk>``: a non-zero rate means the BPE and the dictionary do not belong together.
"""
import logging
import os
import re
import shutil
import tempfile

from ..errors import KAdapterError
from ..third_party_logging import quiet_root_logging
from .text_files import write_lines

_REPLACED = re.compile(r"\] (?P<file>\S+): (?P<sents>\d+) sents, (?P<tokens>\d+) tokens, (?P<pct>[\d.e+-]+)% replaced")
logger = logging.getLogger(__name__)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.stats = []

    def emit(self, record):
        m = _REPLACED.search(record.getMessage())
        if m:
            self.stats.append({"file": m["file"], "sentences": int(m["sents"]), "tokens": int(m["tokens"]), "unk_percent": float(m["pct"])})


def binarize(pieces_by_split, dest_dir, dict_path, workers=1):
    """``pieces_by_split``: ``{split: path}`` of text files with one line of space-separated
    pieces per example. Writes ``dest_dir/{split}.bin/.idx`` and ``dest_dir/dict.txt``;
    returns per-file statistics (sentences, tokens, % replaced by ``<unk>``)."""
    if not os.path.isfile(dict_path):
        raise KAdapterError(f"dictionary not found: {dict_path}")
    os.makedirs(dest_dir, exist_ok=True)
    standard = {s: p for s, p in pieces_by_split.items() if s in ("train", "valid", "test")}
    other = {s: p for s, p in pieces_by_split.items() if s not in standard}
    for path in pieces_by_split.values():
        if not os.path.isfile(path):
            raise KAdapterError(f"pieces file not found: {path}")
    stats = []
    if standard:
        stats += _preprocess(standard, dest_dir, dict_path, workers)
    for split, path in other.items():
        # fairseq's preprocessing knows train/valid/test only: binarize as train, then rename
        tmp = os.path.join(dest_dir, f".{split}.tmp")
        stats += _preprocess({"train": path}, tmp, dict_path, workers)
        for ext in (".bin", ".idx"):
            shutil.move(os.path.join(tmp, "train" + ext), os.path.join(dest_dir, split + ext))
        shutil.rmtree(tmp)
    for s in stats:
        if s["unk_percent"] > 0:
            logger.warning(f"{s['file']}: {s['unk_percent']:.3g}% of pieces are not in {dict_path} (replaced by <unk>)")
    return stats


def binarize_lines(lines_by_split, dest_dir, dict_path, workers=1):
    """``binarize`` for pieces held in memory: ``{split: iterable of "p1 p2 ..." lines}``.
    The temporary piece files live beside ``dest_dir`` and are removed afterwards."""
    parent = os.path.dirname(os.path.abspath(dest_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="pieces.", dir=parent)
    try:
        files = {}
        for split, lines in lines_by_split.items():
            files[split] = os.path.join(tmp, f"{split}.pieces")
            write_lines(files[split], lines)
        return binarize(files, dest_dir, dict_path, workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class PieceFiles:
    """Piece lines written split by split as examples stream in, binarized at the end.

    The streaming twin of ``binarize_lines``: nothing is held in memory, and fairseq's
    preprocessing reads the files by byte ranges, so memory stays flat as the input grows.
    Use as a context manager; the temporary directory beside ``dest_dir`` is always removed.
    """

    def __init__(self, dest_dir, splits):
        self.dest_dir = dest_dir
        parent = os.path.dirname(os.path.abspath(dest_dir))
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="pieces.", dir=parent)
        self.paths = {split: os.path.join(self.tmp, f"{split}.pieces") for split in splits}
        self.files = {split: open(path, "w", encoding="utf-8") for split, path in self.paths.items()}

    def write(self, split, line):
        self.files[split].write(line + "\n")

    def binarize(self, dict_path, workers=1, splits=None):
        """Binarize ``splits`` (default: all) into ``dest_dir``; returns ``binarize``'s statistics."""
        self._close()
        chosen = {s: p for s, p in self.paths.items() if splits is None or s in splits}
        return binarize(chosen, self.dest_dir, dict_path, workers)

    def _close(self):
        for f in self.files.values():
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _preprocess(splits, dest_dir, dict_path, workers):
    from fairseq import options

    with quiet_root_logging():  # its import runs basicConfig(stream=sys.stdout, level=INFO)
        from fairseq_cli import preprocess

    argv = ["--only-source", "--srcdict", dict_path, "--destdir", dest_dir, "--workers", str(workers), "--dataset-impl", "mmap"]
    for split, path in splits.items():
        argv += [f"--{split}pref", path]
    args = options.get_preprocessing_parser().parse_args(argv)
    capture = _Capture()
    plog = logging.getLogger("fairseq_cli.preprocess")
    before, level, propagate = list(plog.handlers), plog.level, plog.propagate
    plog.addHandler(capture)
    # its INFO records (the argument Namespace, dictionary sizes) reach only the capture and
    # preprocess.log in dest_dir, not the console; the converter prints its own summary
    plog.setLevel(logging.INFO)
    plog.propagate = False
    try:
        preprocess.main(args)
    except Exception as e:  # fairseq raises bare asserts / FileExistsError here
        raise KAdapterError(f"binarizing into {dest_dir} failed: {type(e).__name__}: {e}") from e
    finally:
        plog.setLevel(level)
        plog.propagate = propagate
        for h in plog.handlers[:]:
            if h not in before:  # preprocess.main adds a file handler per call
                plog.removeHandler(h)
                h.close()
    return capture.stats
