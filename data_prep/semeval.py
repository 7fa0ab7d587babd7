"""SemEval-2010 Task 8 (``TRAIN_FILE.TXT`` / ``TEST_FILE_FULL.TXT``) -> TACRED JSON.

Each example is a block: ``<id>\\t"<sentence with <e1>..</e1> and <e2>..</e2>>"``,
the relation line (``Cause-Effect(e2,e1)`` or ``Other``), a ``Comment:`` line and
a blank line. The sentence is split into words and punctuation; ``e1`` becomes
the subject and ``e2`` the object, the directed relation name is kept as the
label (19 classes) and ``Other`` becomes ``no_relation`` (``--other-label``) so
that the standard TACRED scorer leaves it out of precision and recall, as the
official SemEval scorer leaves out Other.

    python -m data_prep.semeval --input TRAIN_FILE.TXT --output semeval_train.json
"""
import argparse
import json
import re

from kadapter_fairseq.errors import DataError, KAdapterError

from .common import SkipCounter, progress, run_main

TOKEN = re.compile(r"</?e[12]>|\w+(?:[-'.]\w+)*|[^\w\s]")
HEADER = re.compile(r'^(\d+)\t"(.*)"\s*$')
RELATION = re.compile(r"^([A-Za-z]+-[A-Za-z]+)\((e[12]),(e[12])\)$|^(Other)$")


def read_blocks(path):
    """Yield ``(line, id, sentence, relation)``; a malformed block is a ``DataError``."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            lines = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise KAdapterError(f"cannot read {path}: {e.strerror}") from None
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        header = HEADER.match(lines[i])
        if not header:
            raise DataError(path, i + 1, 'expected <id><TAB>"<sentence>" at the start of an example')
        if i + 1 >= len(lines) or not RELATION.match(lines[i + 1].strip()):
            got = lines[i + 1].strip() if i + 1 < len(lines) else "end of file"
            raise DataError(path, i + 2, f"expected a relation like Cause-Effect(e1,e2) or Other, got {got!r}")
        yield i + 1, header.group(1), header.group(2), lines[i + 1].strip()
        i += 2
        while i < len(lines) and lines[i].strip():  # Comment: line(s)
            i += 1


def to_tacred(line, rid, sentence, relation, path, other_label):
    tokens, spans, open_at = [], {}, {}
    for tok in TOKEN.findall(sentence):
        if tok in ("<e1>", "<e2>"):
            open_at[tok[1:3]] = len(tokens)
        elif tok in ("</e1>", "</e2>"):
            name = tok[2:4]
            if name not in open_at:
                raise DataError(path, line, f"{tok} without {tok.replace('/', '')}")
            spans[name] = (open_at[name], len(tokens) - 1)
        else:
            tokens.append(tok)
    for name in ("e1", "e2"):
        if name not in spans:
            raise DataError(path, line, f"example {rid}: no <{name}>...</{name}> entity")
        if spans[name][1] < spans[name][0]:
            raise DataError(path, line, f"example {rid}: <{name}> is empty")
    m = RELATION.match(relation)
    label = other_label if m.group(4) else relation
    return {
        "id": rid,
        "token": tokens,
        "subj_start": spans["e1"][0], "subj_end": spans["e1"][1],
        "obj_start": spans["e2"][0], "obj_end": spans["e2"][1],
        "subj_type": "NOMINAL", "obj_type": "NOMINAL",
        "relation": label,
    }


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data_prep.semeval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="TRAIN_FILE.TXT or TEST_FILE_FULL.TXT (the files with relations)")
    parser.add_argument("--output", required=True, help="TACRED JSON array to write")
    parser.add_argument("--other-label", default="no_relation", help="label for SemEval's Other (default no_relation)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    counter, records = SkipCounter(), []
    for line, rid, sentence, relation in progress(read_blocks(args.input), desc="semeval"):
        records.append(to_tacred(line, rid, sentence, relation, args.input, args.other_label))
        counter.keep()
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False)
        f.write("\n")
    labels = {}
    for rec in records:
        labels[rec["relation"]] = labels.get(rec["relation"], 0) + 1
    print(counter.summary(f"semeval ({args.input})"))
    print(f"  {len(labels)} labels; {labels.get(args.other_label, 0)} examples of {args.other_label!r}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    run_main(main)
