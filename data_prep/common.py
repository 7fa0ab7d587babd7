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
- ``add_tokenizer_args(parser)`` / ``tokenizer_from_args(args)``: the
  ``--roberta-dir / --bpe / --gpt2-* / --sentencepiece-model / --dict`` options
  and their resolution to ``(bpe object, BPEFiles, dict path)``.
- ``split_sources(args, parser=None)``: ``{split: value}`` of the
  ``--train/--valid/--test`` options that were given (at least one must be).
- ``write_lines(path, lines)``, ``write_prep_json(out_dir, info)``.
- ``write_from_args(write_dataset, args, ...)``: a pre-training converter's
  last step, with the options its writer shares with the other one.
"""
import hashlib
import json
import os
import sys
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

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


def split_sources(args, parser=None) -> dict:
    """The ``--train/--valid/--test`` values given; none is a usage error (``parser``'s, where there is one)."""
    sources = {split: getattr(args, split) for split in SPLITS if getattr(args, split)}
    if not sources:
        message = "give at least one of --train, --valid, --test"
        if parser is None:
            raise KAdapterError(f"nothing to convert: {message}")
        parser.error(message)
    return sources


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
    g.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers")


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
