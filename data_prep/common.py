"""Pieces every data_prep converter shares.

Public API (kept small on purpose; other converters import it):

- ``progress(iterable, desc, total=None, unit="rec")``: a tqdm bar on stderr,
  shown only when stderr is a terminal, so logs and tests stay clean.
- ``SkipCounter``: ``keep()`` / ``skip(reason, where=None)`` per record, then
  ``summary()`` (printable) and ``as_dict()`` (for prep.json). The first few
  locations of each skip reason are kept so a user can go and look.
- ``read_json_records(path)``: yields ``(line, record)`` from a JSON-lines file
  or from a JSON array file, with the 1-based line where each record starts.
  Malformed JSON is a ``DataError`` naming the file and line.
- ``require_file(path)``: a ``DataError`` when an input file is missing.
- ``seeded_split(keys, valid_fraction, seed)``: the set of keys that go to the
  validation split; deterministic for a given seed and independent of order.
  ``split_hash`` / ``valid_hash_cutoff``: the same choice made from 64-bit hashes, for
  converters that stream their input instead of holding every key.
- ``ordered_map(fn, items, workers)``: ``(item, fn(item))`` in input order over a process
  pool with a bounded number of chunks in flight (the converters' ``--workers`` encoding).
- ``add_tokenizer_args(parser)`` / ``tokenizer_from_args(args)``: the
  ``--roberta-dir / --bpe / --gpt2-* / --sentencepiece-model / --dict`` options
  and their resolution to ``(bpe object, BPEFiles, dict path)``.
- ``split_sources(args, parser=None)``: ``{split: value}`` of the
  ``--train/--valid/--test`` options that were given (at least one must be).
- ``write_lines(path, lines)``, ``write_prep_json(out_dir, info)``.
- ``write_encoded_dataset(out_dir, splits, encode, ...)``: the shared tail of the
  pre-training writers (relations, dependency heads, knowledge-graph facts): encode
  in workers, count skips, write pieces and side files, binarize, write prep.json.
- ``write_from_args(write_dataset, args, ...)``: a pre-training converter's
  last step, with the options its writer shares with the other one.
"""
import hashlib
import json
import os
import sys
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from kadapter_fairseq.data.json_records import bad_json, iter_json_records
from kadapter_fairseq.data.text_files import write_lines  # noqa: F401  (the converters' writer)
from kadapter_fairseq.errors import DataError, KAdapterError

MAX_EXAMPLES_PER_REASON = 5
SPLITS = ("train", "valid", "test")


def progress(iterable, desc: str, total: Optional[int] = None, unit: str = "rec"):
    """Wrap ``iterable`` in a progress bar when a person is watching."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not sys.stderr.isatty(), mininterval=0.5)


class SkipCounter:
    """Counts kept records and skipped ones by reason."""

    def __init__(self):
        self.kept = 0
        self.skipped: Counter = Counter()
        self.examples: Dict[str, List[str]] = {}

    def keep(self, n: int = 1):
        self.kept += n

    def skip(self, reason: str, where: Optional[str] = None):
        self.skipped[reason] += 1
        if where is not None:
            seen = self.examples.setdefault(reason, [])
            if len(seen) < MAX_EXAMPLES_PER_REASON:
                seen.append(where)

    def merge(self, other: "SkipCounter"):
        self.kept += other.kept
        self.skipped.update(other.skipped)
        for reason, wheres in other.examples.items():
            seen = self.examples.setdefault(reason, [])
            seen.extend(wheres[: MAX_EXAMPLES_PER_REASON - len(seen)])

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict:
        return {
            "kept": self.kept,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": {k: v for k, v in sorted(self.examples.items())},
        }

    def summary(self, title: str = "") -> str:
        head = f"{title}: " if title else ""
        lines = [f"{head}kept {self.kept}, skipped {self.total_skipped}"]
        for reason, n in self.skipped.most_common():
            where = self.examples.get(reason)
            suffix = f" (e.g. {', '.join(where)})" if where else ""
            lines.append(f"  skipped {n:>8}  {reason}{suffix}")
        return "\n".join(lines)


def require_file(path: str) -> str:
    """``path`` itself, or a ``DataError`` saying it does not exist."""
    if not os.path.isfile(path):
        raise DataError(path, None, "input file not found")
    return path


def read_json_records(path: str) -> Iterator[Tuple[int, object]]:
    """Yield ``(line, record)`` from a JSON-lines file or a file holding one JSON array."""
    require_file(path)
    for _, line, record in iter_json_records(path):
        yield line, record


def load_json(path: str):
    """A whole JSON document; malformed JSON is a ``DataError`` naming the line."""
    require_file(path)
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise bad_json(path, e.lineno, e, "the file") from None


def seeded_split(keys: Iterable[str], valid_fraction: float, seed: int) -> set:
    """Keys assigned to validation: the ``valid_fraction`` with the smallest seeded hash.

    Hashing (rather than shuffling a list) makes the assignment of a key
    independent of input order and of which other keys exist.
    """
    unique = sorted(set(keys))
    if not 0.0 <= valid_fraction < 1.0:
        raise KAdapterError(f"--valid-fraction must be in [0, 1): {valid_fraction}")
    ranked = sorted(unique, key=lambda k: hashlib.sha1(f"{seed}\t{k}".encode("utf-8")).hexdigest())
    n_valid = int(round(len(unique) * valid_fraction))
    if valid_fraction > 0 and n_valid == 0 and len(unique) > 1:
        n_valid = 1
    return set(ranked[:n_valid])


class SplitStream:
    """Examples of several splits as one stream of ``(split, example)`` pairs, in input order:
    what a converter that reads its input once hands to a writer instead of ``{split: list}``."""

    def __init__(self, names: Sequence[str], pairs: Iterable[tuple]):
        self.names = list(names)
        self.pairs = pairs


def split_pairs(splits) -> Tuple[List[str], Iterable[tuple]]:
    """``(split names, (split, example) pairs)`` of a ``SplitStream`` or of ``{split: examples}``."""
    if isinstance(splits, SplitStream):
        return splits.names, splits.pairs
    return list(splits), ((split, ex) for split, examples in splits.items() for ex in examples)


class LineFiles:
    """``{out_dir}/{split}.{ext}`` side files, one line per kept example, written as examples arrive."""

    def __init__(self, out_dir: str, splits: Sequence[str], exts: Sequence[str]):
        self.exts = list(exts)
        self.files = {(s, e): open(os.path.join(out_dir, f"{s}.{e}"), "w", encoding="utf-8") for s in splits for e in exts}

    def write(self, split: str, *lines: str):
        for ext, line in zip(self.exts, lines):
            self.files[split, ext].write(line + "\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in self.files.values():
            f.close()


def split_hash(key: str, seed: int) -> int:
    """``seeded_split``'s ranking key as a 64-bit integer (the leading 16 hex digits of the same
    sha1), so a streaming converter keeps 8 bytes per key instead of the key strings."""
    return int(hashlib.sha1(f"{seed}\t{key}".encode("utf-8")).hexdigest()[:16], 16)


def valid_hash_cutoff(hashes, valid_fraction: float) -> Optional[int]:
    """The largest ``split_hash`` that goes to validation (``None``: nothing does), chosen as
    ``seeded_split`` chooses: the ``valid_fraction`` of distinct keys with the smallest hashes.
    ``hashes`` may repeat (one per record); the split is the same as ``seeded_split``'s unless two
    keys share their first 64 hash bits."""
    import numpy as np

    if not 0.0 <= valid_fraction < 1.0:
        raise KAdapterError(f"--valid-fraction must be in [0, 1): {valid_fraction}")
    unique = np.unique(np.asarray(hashes, dtype=np.uint64))
    n_valid = int(round(len(unique) * valid_fraction))
    if valid_fraction > 0 and n_valid == 0 and len(unique) > 1:
        n_valid = 1
    return int(unique[n_valid - 1]) if n_valid else None


def ordered_map(fn, items: Iterable, workers: int = 1, chunk_size: int = 256, **options) -> Iterator[tuple]:
    """``(item, fn(item, **options))`` for each item, in input order, computed by ``workers`` processes.

    Order and results do not depend on ``workers``, so the output files do not either. Only a few
    chunks per worker are in flight at any time (``Pool.imap`` would read the whole input ahead),
    which keeps memory flat on inputs of any size. ``fn`` and ``options`` reach the workers by
    ``fork`` where the platform has it, so a tokenizer need not be picklable there.
    """
    if workers <= 1:
        for item in items:
            yield item, fn(item, **options)
        return
    import multiprocessing as mp
    from collections import deque

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers, initializer=_init_map_worker, initargs=(fn, options)) as pool:
        pending = deque()
        for chunk in _chunks(items, chunk_size):
            pending.append((chunk, pool.apply_async(_map_chunk, (chunk,))))
            if len(pending) > 2 * workers:
                yield from _collect(*pending.popleft())
        while pending:
            yield from _collect(*pending.popleft())


_MAP_STATE = None


def _init_map_worker(fn, options):
    global _MAP_STATE
    _MAP_STATE = (fn, options)


def _map_chunk(chunk):
    fn, options = _MAP_STATE
    return [fn(item, **options) for item in chunk]


def _collect(chunk, result):
    return zip(chunk, result.get())


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def split_sources(args, parser=None) -> dict:
    """The ``--train/--valid/--test`` values given; none is a usage error (``parser``'s, where there is one)."""
    sources = {split: getattr(args, split) for split in SPLITS if getattr(args, split)}
    if not sources:
        message = "give at least one of --train, --valid, --test"
        if parser is None:
            raise KAdapterError(f"nothing to convert: {message}")
        parser.error(message)
    return sources


def write_encoded_dataset(out_dir: str, splits, encode, dict_path: str, counter: SkipCounter, side_exts: Sequence[str],
                          info: dict, workers: int = 1, prep_info: Optional[dict] = None, unit: str = "rec",
                          what: str = "example", **options) -> Dict[str, int]:
    """The tail every pre-training writer shares: encode, count skips, write, binarize, record.

    ``splits`` is ``{split: examples}`` or a ``SplitStream``; each ``(split, example)`` goes through
    ``encode(item, **options)`` in ``workers`` processes (``ordered_map``: same output for any number)
    and is written as it comes, so nothing grows with the input. ``encode`` returns a skip reason
    (counted against ``example.where``) or ``(piece line, side lines, truncated)``: the pieces go to
    ``out_dir/input0`` (binarized against ``dict_path`` at the end), the side lines to
    ``out_dir/{split}.{ext}`` for ``ext`` in ``side_exts``. A split left empty is an error. Skips are
    merged into ``counter``; ``prep.json`` gets ``prep_info`` + ``info`` + what was written. Returns the
    per-split number of examples written."""
    from kadapter_fairseq.data.binarize import PieceFiles

    os.makedirs(out_dir, exist_ok=True)
    names, pairs = split_pairs(splits)
    per_split = {split: SkipCounter() for split in names}
    truncated = dict.fromkeys(names, 0)
    with PieceFiles(os.path.join(out_dir, "input0"), names) as pieces, LineFiles(out_dir, names, side_exts) as side:
        for (split, ex), result in ordered_map(encode, progress(pairs, desc="encode", unit=unit), workers, **options):
            if isinstance(result, str):
                per_split[split].skip(result, ex.where)
                continue
            piece_line, side_lines, was_truncated = result
            truncated[split] += was_truncated
            per_split[split].keep()
            pieces.write(split, piece_line)
            side.write(split, *side_lines)
        for split in names:
            if not per_split[split].kept:
                raise KAdapterError(f"split {split!r} has no {what} left after filtering (see the skip counts)")
        pieces.binarize(dict_path, workers=workers)
    written = {split: per_split[split].kept for split in names}
    for split in names:
        counter.merge(per_split[split])
    record = dict(prep_info or {})
    record.update(info)
    record.update(
        {
            "examples": written,
            "truncated": truncated,
            "per_split": {s: c.as_dict() for s, c in per_split.items()},
            "counts": counter.as_dict(),
        }
    )
    write_prep_json(out_dir, record)
    return written


def write_from_args(write_dataset, args, splits, tokenizer, counter: SkipCounter, title: str, prep_info: dict, **options):
    """Run a pre-training writer (``write_relation_dataset``, ``write_dependency_dataset``) with the
    shared options (``--out --max-len --long --workers --valid-fraction --seed``) and print what was
    kept and written. ``tokenizer`` is what ``tokenizer_from_args`` returned."""
    from kadapter_fairseq.data.encoding import WordEncoder

    bpe, bpe_files, dict_path = tokenizer
    info = {"tokenizer": bpe_files.as_args(), "dict": dict_path, "valid_fraction": args.valid_fraction,
            "seed": args.seed, **prep_info}
    written = write_dataset(args.out, splits, WordEncoder(bpe), dict_path, args.max_len, counter, long=args.long,
                            workers=args.workers, prep_info=info, **options)
    print(counter.summary(title))
    print("written: " + ", ".join(f"{s} {n}" for s, n in written.items()) + f" -> {args.out}")
    return written


def write_prep_json(out_dir: str, info: dict):
    with open(os.path.join(out_dir, "prep.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def add_tokenizer_args(parser):
    g = parser.add_argument_group("tokenizer and dictionary (local files only; nothing is downloaded)")
    g.add_argument("--roberta-dir", help="base model directory holding dict.txt and the tokenizer files "
                   "(encoder.json + vocab.bpe, or sentencepiece.bpe.model)")
    g.add_argument("--bpe", choices=["auto", "gpt2", "sentencepiece"], default="auto")
    g.add_argument("--gpt2-encoder-json", help="GPT-2 BPE encoder.json")
    g.add_argument("--gpt2-vocab-bpe", help="GPT-2 BPE vocab.bpe")
    g.add_argument("--sentencepiece-model", help="sentencepiece model file")
    g.add_argument("--dict", dest="dict_path", help="fairseq dict.txt of the base model (default: <roberta-dir>/dict.txt)")
    g.add_argument("--workers", type=int, default=1,
                   help="processes for BPE encoding (where the converter streams) and fairseq-preprocess")


def tokenizer_from_args(args):
    """``(bpe, bpe_files, dict_path)`` from the options of ``add_tokenizer_args``."""
    from kadapter_fairseq.bpe import find_bpe_files, load_bpe

    files = find_bpe_files(
        base_dir=args.roberta_dir,
        bpe=args.bpe,
        gpt2_encoder_json=args.gpt2_encoder_json,
        gpt2_vocab_bpe=args.gpt2_vocab_bpe,
        sentencepiece_model=args.sentencepiece_model,
    )
    dict_path = args.dict_path or (os.path.join(args.roberta_dir, "dict.txt") if args.roberta_dir else None)
    if not dict_path or not os.path.isfile(dict_path):
        raise KAdapterError(f"dictionary not found: {dict_path or '(none given)'}; pass --dict or --roberta-dir")
    return load_bpe(files), files, dict_path


def run_main(main, argv=None):
    """Run a converter's ``main``; user-fixable errors print one line and exit 2."""
    try:
        return main(argv)
    except KAdapterError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
