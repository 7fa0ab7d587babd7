"""``kadapter-score --task NAME --gold FILE --pred FILE``: print the metrics as one JSON object."""
import argparse
import json
import sys

from ..errors import KAdapterError
from ..registry import import_registering
from .registry import SCORERS

# Modules that register scorers. The QA ones belong to another part of the
# project and may be absent from a partial checkout; a missing module only
# removes its task names from --task.
SCORER_MODULES = ("kadapter_fairseq.scoring.classification", "kadapter_fairseq.scoring.qa")


def load_scorers():
    import_registering(SCORER_MODULES)
    return SCORERS


def build_parser(tasks):
    parser = argparse.ArgumentParser(
        prog="kadapter-score",
        description="Score a JSON-lines prediction file against a gold file in the dataset's own format. "
        "Prints one JSON object: the task's metrics (fractions in [0, 1]), n (gold examples scored) and "
        "missing (gold ids with no prediction, each counted as wrong).",
    )
    parser.add_argument("--task", required=True, choices=sorted(tasks), help="which dataset/metric set")
    parser.add_argument("--gold", required=True, help="gold file in the dataset's format")
    parser.add_argument("--pred", required=True, help='predictions, JSONL: one {"id": ..., <field>: ...} per line')
    parser.add_argument("--indent", type=int, default=None, help="pretty-print the JSON with this indent")
    return parser


def main(argv=None):
    scorers = load_scorers()
    args = build_parser(scorers).parse_args(argv)
    try:
        result = scorers[args.task](args.gold, args.pred)
    except KAdapterError as e:
        print(f"kadapter-score: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=args.indent, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
