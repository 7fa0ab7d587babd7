"""The conversion loop shared by the entity typing and TACRED converters.

Raw records -> (label check, marking, truncation) -> the binarized layout, with a
per-split summary of what was kept, skipped (by reason) and truncated, also
written to ``prep.json``. The record readers and encoders live in
``kadapter_fairseq.data.downstream`` so that ``kadapter-predict`` uses them too.
"""
import os
from collections import Counter

from kadapter_fairseq.data.downstream import encode_records, write_classification_data
from kadapter_fairseq.data.encoding import WordEncoder
from kadapter_fairseq.data.labels import LabelVocabulary
from kadapter_fairseq.errors import KAdapterError

from .common import SPLITS, SkipCounter, add_tokenizer_args, progress, split_sources, tokenizer_from_args, write_prep_json
from .subsample import Subsample, add_subsample_args, describe


def add_convert_args(parser, max_len_default, what):
    for split in SPLITS:
        parser.add_argument(f"--{split}", help=f"{split} split ({what})")
    parser.add_argument("--out", required=True, help="output data directory")
    parser.add_argument("--labels", help="label set, one per line (default: the train split's labels, most frequent first)")
    parser.add_argument("--max-len", type=int, default=max_len_default,
                        help=f"positions per example incl. <s> and </s> (default {max_len_default}); longer inputs are "
                        "cut to a window keeping the marked entities")
    parser.add_argument("--skip-unknown-labels", action="store_true",
                        help="count and skip records whose label is not in the label set (default: stop with an error)")
    add_subsample_args(parser, per_label=True)
    add_tokenizer_args(parser)


def labels_from_records(records, labels_of) -> LabelVocabulary:
    """Labels seen in ``records``, most frequent first (ties by name), so ids are reproducible."""
    counts = Counter(label for rec in records for label in labels_of(rec))
    return LabelVocabulary(sorted(counts, key=lambda t: (-counts[t], t)))


def convert_marked_dataset(args, read_records, encode, labels_of, info, train_filters=()):
    """Run the conversion described by ``add_convert_args``; ``encode(word_encoder, record, max_len)``.

    ``train_filters``: objects with ``key``, ``__call__(records) -> records``, ``describe()`` (a
    printable line) and ``as_dict()``, applied in turn to the training records before encoding
    (TACRED's ``--max-negatives``); each one's ``as_dict()`` goes to prep.json under its ``key``. The ``--fraction``/``--max-examples``
    subsample then applies to the encoded training examples, so its counts are exact.
    """
    inputs = split_sources(args)
    subsample = Subsample.from_args(args)
    subsample.require_train(inputs)
    if args.labels:
        labels = LabelVocabulary.load(args.labels)
    elif "train" in inputs:
        labels = labels_from_records(read_records(inputs["train"]), labels_of)
    else:
        raise KAdapterError("no label set: pass --labels or a --train file to take the labels from")
    bpe, bpe_files, dict_path = tokenizer_from_args(args)
    encoder = WordEncoder(bpe)
    splits, counters, truncated = {}, {}, {}
    subsampled = None
    for split, path in inputs.items():
        counter = SkipCounter()
        records = read_records(path)
        if split == "train":
            for keep in train_filters:
                records = keep(records)
        examples, truncated[split] = encode_records(
            progress(records, desc=f"encode {split}"),
            encode=lambda rec: encode(encoder, rec, args.max_len),
            labels_of=labels_of,
            labels=labels,
            skip=counter.skip,
            unknown_labels="skip" if args.skip_unknown_labels else "error",
        )
        counter.keep(len(examples))
        print(counter.summary(f"{split} ({path})"))
        print(f"  truncated to --max-len {args.max_len} with the marked entities kept: {truncated[split]}")
        if split == "train":
            for keep in train_filters:
                print("  " + keep.describe())
            examples, subsampled = subsample.apply(examples, labels_of=lambda ex: ex.labels)
            if subsampled:
                print("  " + describe(subsampled))
        if not examples:
            raise KAdapterError(f"{path}: no example left to write")
        splits[split], counters[split] = examples, counter
    write_classification_data(args.out, splits, dict_path, labels, workers=args.workers)
    info = dict(info)
    info.update({
        "sources": {split: os.path.abspath(p) for split, p in inputs.items()},
        "tokenizer": bpe_files.as_args(),
        "dict": os.path.abspath(dict_path),
        "max_len": args.max_len,
        "num_labels": len(labels),
        "examples": {split: len(ex) for split, ex in splits.items()},
        "truncated": truncated,
        "counts": {split: c.as_dict() for split, c in counters.items()},
        "subsample": subsampled,
    })
    for keep in train_filters:
        info[keep.key] = keep.as_dict()
    write_prep_json(args.out, info)
    print(f"wrote {args.out} ({len(labels)} labels)")
    return info
