"""TACRED JSON -> the binarized layout of the ``tacred`` task.

Records: ``{"id", "token", "subj_start", "subj_end", "obj_start", "obj_end",
"relation", ...}`` with inclusive word spans (a JSON array, as released, or JSON
lines). Penn Treebank escapes (``-LRB-``, ``-RRB-``, ``` `` ``` ...) are undone
before BPE; the subject is wrapped in ``@ ... @`` and the object in ``# ... #``.
Over-long sentences are cut to a window that keeps both marked entities; a span
outside the sentence, overlapping entities, or entities that cannot fit
``--max-len`` are counted skips. SemEval-2010 Task 8 can be turned into this
format with ``python -m data_prep.semeval``.

    python -m data_prep.tacred --roberta-dir roberta.large \\
        --train train.json --valid dev.json --test test.json --out tacred-bin
"""
import argparse

from kadapter_fairseq.data.downstream import encode_relation, read_relation_records

from .common import run_main
from .marked_classification import add_convert_args, convert_marked_dataset

DEFAULT_MAX_LEN = 184  # the authors' TACRED max_seq_length


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data_prep.tacred", description=__doc__.split("\n\n")[0])
    add_convert_args(parser, DEFAULT_MAX_LEN, "TACRED JSON")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    convert_marked_dataset(
        args,
        read_records=read_relation_records,
        encode=encode_relation,
        labels_of=lambda rec: [rec.relation],
        info={"task": "tacred"},
    )
    return 0


if __name__ == "__main__":
    run_main(main)
