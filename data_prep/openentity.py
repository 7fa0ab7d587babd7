"""Entity typing data (OpenEntity, FIGER) -> the binarized layout; UFET crowd -> ERNIE JSON.

``convert``: ERNIE/K-Adapter JSON (a JSON array or JSON lines of ``{"sent",
"start", "end", "labels"}``, character offsets, end exclusive) for OpenEntity's
9 types or FIGER's type paths. The mention is wrapped in ``@ ... @``; over-long
sentences are cut to a window that keeps the marked mention; a mention outside
its sentence or one that cannot fit ``--max-len`` is a counted skip.

``from-ufet``: the raw Choi et al. (2018) crowd format (``left_context_token``,
``mention_span``, ``right_context_token``, ``y_str``, ``annot_id``) to ERNIE
JSON; ``--general`` keeps the 9 general types, which gives the ERNIE 9-type
OpenEntity files.

    python -m data_prep.openentity convert --roberta-dir roberta.large \\
        --train train.json --valid dev.json --test test.json --labels types.txt --out openentity-bin
    python -m data_prep.openentity from-ufet --input crowd/train.json --general --output train.json
"""
import argparse
import json

from kadapter_fairseq.data.downstream import encode_typing, read_typing_records
from kadapter_fairseq.data.labels import LabelVocabulary
from kadapter_fairseq.errors import DataError

from .common import SkipCounter, progress, read_json_records, run_main
from .marked_classification import add_convert_args, convert_marked_dataset

GENERAL_TYPES = ("person", "group", "organization", "location", "entity", "time", "object", "event", "place")
DEFAULT_MAX_LEN = 256  # the authors' OpenEntity/FIGER max_seq_length


def convert(args):
    convert_marked_dataset(
        args,
        read_records=read_typing_records,
        encode=encode_typing,
        labels_of=lambda rec: rec.labels,
        info={"task": "entity_typing", "scheme": args.scheme},
    )


def ufet_to_ernie(record, keep_types=None):
    """One crowd record as an ERNIE record: the sentence is the tokens joined by single spaces."""
    left = " ".join(record["left_context_token"])
    mention = record["mention_span"]
    sent = " ".join(record["left_context_token"] + [mention] + record["right_context_token"])
    start = len(left) + (1 if left else 0)
    labels = [t for t in record["y_str"] if keep_types is None or t in keep_types]
    out = {"sent": sent, "start": start, "end": start + len(mention), "labels": labels}
    if "annot_id" in record:
        out["id"] = record["annot_id"]
    return out


def from_ufet(args):
    keep = None
    if args.general:
        keep = set(GENERAL_TYPES)
    elif args.types:
        keep = set(LabelVocabulary.load(args.types).labels)
    counter = SkipCounter()
    dropped_types, no_type_left = 0, 0
    out = []
    for line, rec in progress(read_json_records(args.input), desc="from-ufet"):
        where = f"{args.input}:{line}"
        problem = _ufet_problem(rec)
        if problem:
            raise DataError(args.input, line, problem)
        if not rec["mention_span"].strip():
            counter.skip("empty mention", where)
            continue
        converted = ufet_to_ernie(rec, keep)
        dropped_types += len(rec["y_str"]) - len(converted["labels"])
        no_type_left += not converted["labels"]
        out.append(converted)
        counter.keep()
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(counter.summary(f"from-ufet ({args.input})"))
    if keep is not None:
        print(f"  types outside the kept set dropped: {dropped_types}; records left with no type (kept): {no_type_left}")
    print(f"wrote {args.output}")


def _ufet_problem(rec):
    if not isinstance(rec, dict):
        return "expected a JSON object"
    for key in ("left_context_token", "right_context_token", "y_str"):
        value = rec.get(key)
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            return f"field {key!r} should be a list of strings"
    if not isinstance(rec.get("mention_span"), str):
        return "field 'mention_span' should be a string"
    return None


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data_prep.openentity", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="ERNIE JSON (OpenEntity, FIGER) -> binarized entity_typing data")
    add_convert_args(c, DEFAULT_MAX_LEN, "ERNIE JSON")
    c.add_argument("--scheme", choices=["openentity", "figer"], default="openentity",
                   help="recorded in prep.json; the task's typing_scheme picks the decision rule and metrics")
    c.set_defaults(func=convert)
    u = sub.add_parser("from-ufet", help="UFET crowd JSON lines -> ERNIE JSON")
    u.add_argument("--input", required=True)
    u.add_argument("--output", required=True)
    g = u.add_mutually_exclusive_group()
    g.add_argument("--general", action="store_true", help="keep only the 9 general types (ERNIE's OpenEntity)")
    g.add_argument("--types", help="keep only the types listed in this file")
    u.set_defaults(func=from_ufet)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    run_main(main)
