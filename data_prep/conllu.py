"""CoNLL-U treebanks (gold heads) -> dependency-head-prediction data.

Words are the FORM column of the integer-ID lines; multi-word token ranges
(``3-4``) and empty nodes (``5.1``) are left out, as in UD's basic trees.
Malformed lines (wrong column count, non-integer ID or HEAD, IDs out of
sequence) stop the run with an error naming file and line; trees that parse
but are not trees (cycle, no root, several roots, head out of range) and
over-long sentences are skipped and counted (see ``data_prep.dependency``).

Either give ``--valid`` files (e.g. UD's dev set) or let a seeded
``--valid-fraction`` of the input sentences become the validation split (the input
is then read twice, keeping 8 bytes per sentence). Sentences are streamed, never listed;
``--workers N`` encodes with N processes, with output identical to one worker.

Example:
    python -m data_prep.conllu examples/data/ud_english_ewt/en_ewt-ud-dev_sample.conllu \\
        --roberta-dir roberta.large --out data-bin/ewt-heads
"""
import argparse
import os
from typing import Iterator, List

from kadapter_fairseq.errors import DataError

from .common import SkipCounter, add_tokenizer_args, progress, require_file, run_main, tokenizer_from_args
from .dependency import DependencyExample, add_dependency_args, stream_split_by_id, write_from_args


def read_conllu(path: str, counter: SkipCounter) -> Iterator[DependencyExample]:
    """Sentences of a CoNLL-U file; a sentence block without words is counted as empty."""
    base = os.path.basename(path)
    words: List[str] = []
    heads: List[int] = []
    sent_id, start_line, n_sent = None, None, 0

    def flush():
        nonlocal words, heads, sent_id, start_line, n_sent
        example = None
        if start_line is not None:
            n_sent += 1
            ident = sent_id or f"{base}:{n_sent}"
            if words:
                example = DependencyExample(ident, words, heads, f"{path}:{start_line}")
            else:
                counter.skip("empty_sentence", f"{path}:{start_line}")
        words, heads, sent_id, start_line = [], [], None, None
        return example

    with open(require_file(path), encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                ex = flush()
                if ex:
                    yield ex
                continue
            if start_line is None:
                start_line = n
            if line.startswith("#"):
                if line.startswith("# sent_id") and "=" in line:
                    sent_id = line.split("=", 1)[1].strip()
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise DataError(path, n, f"CoNLL-U word lines have 10 tab-separated columns, found {len(cols)}")
            ident = cols[0]
            if "-" in ident or "." in ident:
                continue  # multi-word token range or empty node
            if not ident.isdigit():
                raise DataError(path, n, f"ID must be an integer, a range (3-4) or a decimal (5.1), got {ident!r}")
            if int(ident) != len(words) + 1:
                raise DataError(path, n, f"word IDs out of sequence: expected {len(words) + 1}, got {ident}")
            head = cols[6]
            if not head.isdigit():
                raise DataError(path, n, f"HEAD must be a non-negative integer, got {head!r}")
            words.append(cols[1])
            heads.append(int(head))
    ex = flush()
    if ex:
        yield ex


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.conllu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="CoNLL-U files for training (and for valid when no --valid is given)")
    p.add_argument("--valid", nargs="+", default=None, help="CoNLL-U files for the validation split")
    p.add_argument("--out", required=True, help="output data directory")
    add_dependency_args(p)
    add_tokenizer_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    tokenizer = tokenizer_from_args(args)
    counter = SkipCounter()

    def read(paths, skips):
        for path in paths:
            yield from progress(read_conllu(path, skips), desc=f"read {path}", unit="sent")

    # streamed: no list of sentences is built, however large the treebank
    if args.valid:
        splits = {"train": read(args.inputs, counter), "valid": read(args.valid, counter)}
    else:
        splits = stream_split_by_id(lambda skips: read(args.inputs, skips), counter, args.valid_fraction, args.seed)
    write_from_args(args, splits, tokenizer, counter, "CoNLL-U sentences",
                    {"converter": "data_prep.conllu", "sources": args.inputs})
    return 0


if __name__ == "__main__":
    run_main(main)
