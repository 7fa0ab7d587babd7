"""CosmosQA CSV or JSONL -> binarized four-choice data.

Input: the official CSV (``id,context,question,answer0,answer1,answer2,answer3,label``)
or JSON lines with the same fields. Each choice ``k`` becomes
``<s> context </s> question </s> answer_k </s>``, written to ``<out>/input{k}/``;
labels (answer indices) go to ``<out>/{split}.label``, record ids to
``<out>/{split}.ids``.

A record with a missing context, question or answer (or, in train/valid, a
missing label) stops the conversion with ``file:line: missing answer2``;
``--bad-records skip`` skips such records and counts them instead. Over-long
choices are truncated to --max-len (context first, from its end) and counted.

Example:
    python -m data_prep.cosmosqa --train train.csv --valid valid.csv --roberta-dir roberta.large --out data-bin/cosmosqa
"""
import argparse
import os

from kadapter_fairseq.errors import DataError
from kadapter_fairseq.scoring.qa import COSMOSQA_CHOICES, cosmosqa_rows, parse_cosmosqa_row

from .common import (
    SPLITS,
    SkipCounter,
    add_tokenizer_args,
    progress,
    run_main,
    split_sources,
    tokenizer_from_args,
    write_lines,
    write_prep_json,
)
from .subsample import Subsample, add_subsample_args, describe

LABELLED_SPLITS = ("train", "valid")
DEFAULT_MAX_LEN = 256


def read_split(path, split, bad_records, counter: SkipCounter):
    records = []
    for position, (line, row) in enumerate(progress(cosmosqa_rows(path), desc=f"read {split}")):
        try:
            records.append(parse_cosmosqa_row(row, path, line, position, require_label=split in LABELLED_SPLITS))
        except DataError as e:
            if bad_records == "error":
                raise
            counter.skip(e.message, f"{path}:{line}")
    labelled = sum(r.label is not None for r in records)
    if 0 < labelled < len(records):
        first = next(r for r in records if r.label is None)
        raise DataError(path, first.line, f"missing label ({labelled} of {len(records)} records have one)")
    return records


def write_cosmosqa_data(out_dir, splits, bpe, dict_path, max_len, counters, workers=1):
    """Encode and binarize ``splits = {split: [CosmosQARecord]}``; returns truncation counts per split."""
    from kadapter_fairseq.data.binarize import binarize_lines
    from kadapter_fairseq.tasks.cosmosqa import encode_choices

    os.makedirs(out_dir, exist_ok=True)
    truncated = {}
    choice_lines = [{} for _ in range(COSMOSQA_CHOICES)]  # [choice k][split] -> piece lines
    for split, records in splits.items():
        for k in range(COSMOSQA_CHOICES):
            choice_lines[k][split] = []
        truncated[split] = 0
        for rec in progress(records, desc=f"encode {split}"):
            choices, cut = encode_choices(bpe, rec, max_len)
            truncated[split] += cut
            for k, line in enumerate(choices):
                choice_lines[k][split].append(line)
        counters[split].keep(len(records))
        write_lines(os.path.join(out_dir, f"{split}.ids"), (r.id for r in records))
        if records and records[0].label is not None:
            write_lines(os.path.join(out_dir, f"{split}.label"), (str(r.label) for r in records))
    for k in range(COSMOSQA_CHOICES):
        binarize_lines(choice_lines[k], os.path.join(out_dir, f"input{k}"), dict_path, workers)
    return truncated


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.cosmosqa", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for split in SPLITS:
        p.add_argument(f"--{split}", help=f"{split} split: CosmosQA CSV or JSONL")
    p.add_argument("--out", required=True, help="output data directory")
    p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="longest sequence per choice, <s> and </s> included")
    p.add_argument("--bad-records", choices=["error", "skip"], default="error",
                   help="a record with a missing field: stop with file:line (error) or skip and count it (skip)")
    add_subsample_args(p)
    add_tokenizer_args(p)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    sources = split_sources(args, parser)
    subsample = Subsample.from_args(args)
    subsample.require_train(sources)
    bpe, bpe_files, dict_path = tokenizer_from_args(args)
    counters = {split: SkipCounter() for split in sources}
    splits = {split: read_split(path, split, args.bad_records, counters[split]) for split, path in sources.items()}
    subsampled = None
    if "train" in splits:  # encoding drops nothing (it truncates), so records are the examples
        splits["train"], subsampled = subsample.apply(splits["train"])
        if subsampled:
            print(describe(subsampled))
    truncated = write_cosmosqa_data(args.out, splits, bpe, dict_path, args.max_len, counters, workers=args.workers)
    report = {}
    for split, counter in counters.items():
        print(counter.summary(f"CosmosQA {split}"))
        print(f"  truncated to {args.max_len} positions: {truncated[split]}")
        report[split] = {**counter.as_dict(), "truncated": truncated[split]}
    write_prep_json(args.out, {"converter": "data_prep.cosmosqa", "sources": sources, "tokenizer": bpe_files.as_args(),
                               "dict": dict_path, "max_len": args.max_len, "bad_records": args.bad_records,
                               "splits": report, "subsample": subsampled})
    print(f"written -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
