"""SearchQA JSON -> the span_qa layout (and binarized data).

Input: SearchQA's JSON records (``question``, ``answer``, ``search_results``:
``[{"snippet", "title", "url", ...}]``, ``id``), as released one record per
file in ``train/``, ``val/``, ``test/`` folders. Each ``--train/--valid/--test``
takes files or folders (``*.json`` found recursively, in sorted order); a file
may also hold one JSON array of records or JSON lines.

Every snippet is a paragraph; the answer is the record's ``answer``. The record
id is its ``id`` field, else ``<file name>`` for one-record files, else its
0-based position. Records with no usable snippet are kept (they score 0) and
counted. Writes ``<out>/{split}.jsonl`` in the span_qa layout, then binarizes
it like data_prep.span_qa (``--layout-only`` stops after the JSONL).

Example:
    python -m data_prep.searchqa --train SearchQA/train --valid SearchQA/val --roberta-dir roberta.large --out data-bin/searchqa
"""
import argparse
import json
import os
from collections import Counter
from typing import List

from kadapter_fairseq.errors import DataError, KAdapterError
from kadapter_fairseq.scoring.qa import SpanQARecord

from .common import progress, read_json_records, run_main, split_sources
from .span_qa import SPLITS, add_span_qa_args, check_unique_ids, finish_from_args


def json_files(paths: List[str]) -> List[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name) for root, _, names in os.walk(path) for name in names if name.endswith(".json")
            )
            if not found:
                raise KAdapterError(f"no *.json files under {path}")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise KAdapterError(f"SearchQA input not found: {path}")
    return files


def file_records(path):
    """``(line, record)`` pairs: one (possibly pretty-printed) JSON object, a JSON array, or JSON lines."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    body = text.lstrip()
    if body.startswith("{"):
        try:
            return [(text[: len(text) - len(body)].count("\n") + 1, json.loads(text))]
        except json.JSONDecodeError:
            pass  # several objects: JSON lines
    return list(read_json_records(path))


def searchqa_record(raw, path, line, default_id, stats: Counter) -> SpanQARecord:
    if not isinstance(raw, dict):
        raise DataError(path, line, "expected a SearchQA JSON object")
    question, answer = raw.get("question"), raw.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise DataError(path, line, "missing question")
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(path, line, "missing answer")
    results = raw.get("search_results") or []
    if not isinstance(results, list):
        raise DataError(path, line, "search_results should be a list")
    paragraphs = []
    for result in results:
        snippet = result.get("snippet") if isinstance(result, dict) else None
        if isinstance(snippet, str) and snippet.strip():
            paragraphs.append(" ".join(snippet.split()))
        else:
            stats["search results without a snippet"] += 1
    rid = raw.get("id")
    return SpanQARecord(line=line, id=str(rid) if rid not in (None, "") else default_id, question=question,
                        paragraphs=paragraphs, answers=[answer])


def read_searchqa(paths: List[str], stats: Counter) -> List[SpanQARecord]:
    records = []
    for path in progress(json_files(paths), desc="read SearchQA", unit="file"):
        items = file_records(path)
        for line, raw in items:
            default = os.path.splitext(os.path.basename(path))[0] if len(items) == 1 else str(len(records))
            records.append(searchqa_record(raw, path, line, default, stats))
    return records


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.searchqa", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for split in SPLITS:
        p.add_argument(f"--{split}", nargs="+", metavar="PATH", help=f"{split} records: JSON files or folders")
    add_span_qa_args(p, layout_only=True)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    sources = split_sources(args, parser)
    splits, stats = {}, Counter()
    for split, paths in sources.items():
        splits[split] = read_searchqa(paths, stats)
        check_unique_ids(splits[split], ", ".join(paths))
        print(f"SearchQA {split}: {len(splits[split])} questions from {', '.join(paths)}")
    for key, n in sorted(stats.items()):
        print(f"  {key}: {n}")
    finish_from_args(args, splits, sources, "data_prep.searchqa")
    return 0


if __name__ == "__main__":
    run_main(main)
