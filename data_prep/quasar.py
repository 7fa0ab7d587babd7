"""Quasar-T -> the span_qa layout (and binarized data).

Quasar-T ships per split a questions file (JSON lines ``{"uid", "question",
"answer", ...}``) and a contexts file (JSON lines ``{"uid", "contexts":
[[score, text], ...]}``, short or long contexts); either may be gzipped. Each
``--train/--valid/--test QUESTIONS CONTEXTS`` pairs them by ``uid``. Every
context text is a paragraph (in the file's order); the record id is the
``uid``. Questions without a contexts line are kept (they score 0) and counted;
a contexts line for an unknown uid is counted and ignored. Writes
``<out>/{split}.jsonl`` in the span_qa layout, then binarizes it like
data_prep.span_qa (``--layout-only`` stops after the JSONL).

Example:
    python -m data_prep.quasar --train train_questions.json.gz contexts/short/train_contexts.json.gz \\
        --valid dev_questions.json.gz contexts/short/dev_contexts.json.gz --roberta-dir roberta.large --out data-bin/quasart
"""
import argparse
import gzip
import json
import os
from collections import Counter
from typing import Dict, List

from kadapter_fairseq.data.json_records import iter_json_objects
from kadapter_fairseq.errors import DataError, KAdapterError
from kadapter_fairseq.scoring.qa import SpanQARecord

from .common import progress, run_main, split_sources
from .span_qa import SPLITS, add_span_qa_args, check_unique_ids, finish_from_args


def json_lines(path):
    """``(line, object)`` per non-blank line of a (possibly gzipped) JSON-lines file."""
    if not os.path.isfile(path):
        raise KAdapterError(f"Quasar-T file not found: {path}")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from iter_json_objects(path, f)


def _uid(obj, path, line):
    uid = obj.get("uid")
    if uid in (None, ""):
        raise DataError(path, line, "missing uid")
    return str(uid)


def read_contexts(path, stats: Counter) -> Dict[str, List[str]]:
    contexts = {}
    for line, obj in progress(json_lines(path), desc="read contexts", unit="q"):
        uid = _uid(obj, path, line)
        items = obj.get("contexts")
        if not isinstance(items, list):
            raise DataError(path, line, "contexts should be a list of [score, text] pairs")
        texts = []
        for item in items:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], str)):
                raise DataError(path, line, f"context {json.dumps(item)[:60]} is not a [score, text] pair")
            if item[1].strip():
                texts.append(item[1])
            else:
                stats["empty contexts"] += 1
        if uid in contexts:
            raise DataError(path, line, f"uid {uid!r} has a second contexts line")
        contexts[uid] = texts
    return contexts


def read_quasar(questions_path, contexts_path, stats: Counter) -> List[SpanQARecord]:
    contexts = read_contexts(contexts_path, stats)
    records, used = [], set()
    for line, obj in progress(json_lines(questions_path), desc="read questions", unit="q"):
        uid = _uid(obj, questions_path, line)
        question, answer = obj.get("question"), obj.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise DataError(questions_path, line, "missing question")
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(questions_path, line, "missing answer")
        if uid not in contexts:
            stats["questions without a contexts line (kept, score 0)"] += 1
        used.add(uid)
        records.append(SpanQARecord(line=line, id=uid, question=question, paragraphs=contexts.get(uid, []), answers=[answer]))
    stats["contexts lines for unknown uids (ignored)"] += len(set(contexts) - used)
    return records


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.quasar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for split in SPLITS:
        p.add_argument(f"--{split}", nargs=2, metavar=("QUESTIONS", "CONTEXTS"), help=f"{split} questions and contexts files")
    add_span_qa_args(p, layout_only=True)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    sources = split_sources(args, parser)
    splits = {}
    for split, (questions, contexts) in sources.items():
        stats = Counter()
        splits[split] = read_quasar(questions, contexts, stats)
        check_unique_ids(splits[split], questions)
        print(f"Quasar-T {split}: {len(splits[split])} questions from {questions}")
        for key, n in sorted(stats.items()):
            if n:
                print(f"  {key}: {n}")
    finish_from_args(args, splits, sources, "data_prep.quasar")
    return 0


if __name__ == "__main__":
    run_main(main)
