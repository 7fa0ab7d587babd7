"""TACRED JSON -> the binarized layout of the ``tacred`` task.

Records: ``{"id", "token", "subj_start", "subj_end", "obj_start", "obj_end",
"relation", ...}`` with inclusive word spans (a JSON array, as released, or JSON
lines). Penn Treebank escapes (``-LRB-``, ``-RRB-``, ``` `` ``` ...) are undone
before BPE; the subject is wrapped in ``@ ... @`` and the object in ``# ... #``.
Over-long sentences are cut to a window that keeps both marked entities; a span
outside the sentence, overlapping entities, or entities that cannot fit
``--max-len`` are counted skips. SemEval-2010 Task 8 can be turned into this
format with ``python -m data_prep.semeval``.

``--max-negatives N`` keeps only the first N ``no_relation`` records of the
training file (file order; the other relations are all kept), as the authors'
TACRED script does. Their ``--negative_sample 45000`` decrements its counter
before testing it and so keeps the first 44,999: pass ``--max-negatives 44999``
to train on exactly their training set. ``--fraction``/``--max-examples``/
``--max-examples-per-label`` then subsample what is left (see data_prep/subsample.py).

    python -m data_prep.tacred --roberta-dir roberta.large \\
        --train train.json --valid dev.json --test test.json --out tacred-bin --max-negatives 44999
"""
import argparse

from kadapter_fairseq.data.downstream import encode_relation, read_relation_records

from .common import run_main
from .marked_classification import add_convert_args, convert_marked_dataset
from .subsample import positive_int

DEFAULT_MAX_LEN = 184  # the authors' TACRED max_seq_length
NEGATIVE_LABEL = "no_relation"


class FirstNegatives:
    """Keeps the first ``limit`` training records labelled ``label``, in file order."""

    key = "max_negatives"

    def __init__(self, limit, label=NEGATIVE_LABEL):
        self.limit, self.label = limit, label
        self.seen = self.kept = self.records = 0

    def __call__(self, records):
        for rec in records:
            self.records += 1
            if rec.relation == self.label:
                self.seen += 1
                if self.seen > self.limit:
                    continue
                self.kept += 1
            yield rec

    def describe(self):
        return (f"--max-negatives {self.limit}: kept the first {self.kept} of {self.seen} {self.label!r} training "
                f"records ({self.records} records read)")

    def as_dict(self):
        return {"limit": self.limit, "label": self.label, "records_read": self.records,
                "negatives_before": self.seen, "negatives_after": self.kept}


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data_prep.tacred", description=__doc__.split("\n\n")[0])
    add_convert_args(parser, DEFAULT_MAX_LEN, "TACRED JSON")
    parser.add_argument("--max-negatives", type=positive_int, metavar="N",
                        help=f"keep only the first N {NEGATIVE_LABEL!r} training records, in file order (the authors' "
                        "cap; their --negative_sample 45000 keeps 44,999, so 44999 reproduces their training set)")
    parser.add_argument("--negative-label", default=NEGATIVE_LABEL,
                        help=f"the label --max-negatives counts (default {NEGATIVE_LABEL})")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    filters = []
    if args.max_negatives is not None:
        if not args.train:
            parser.error("--max-negatives caps the training split, but no --train was given")
        filters.append(FirstNegatives(args.max_negatives, args.negative_label))
    convert_marked_dataset(
        args,
        read_records=read_relation_records,
        encode=encode_relation,
        labels_of=lambda rec: [rec.relation],
        info={"task": "tacred", FirstNegatives.key: None},
        train_filters=filters,
    )
    return 0


if __name__ == "__main__":
    run_main(main)
