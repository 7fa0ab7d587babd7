"""span_qa layout (question + paragraphs + answers, JSONL) -> binarized pairs.

Input, one JSON object per line (what data_prep.searchqa and data_prep.quasar write):

    {"id": "...", "question": "...", "paragraphs": ["...", ...], "answers": ["...", ...]}

Every (question, paragraph) pair becomes ``<s> question </s> paragraph </s>``.
Training keeps the pairs whose paragraph contains an answer (first occurrence,
SQuAD-normalised token match) and skips, and counts, questions with no such
paragraph; evaluation splits keep every question and every non-empty paragraph.
Over-long pairs are truncated: the question to --max-question-len pieces, the
paragraph to a window around the answer (training) or to its beginning
(evaluation); the counts are printed and kept in prep.json.

Example:
    python -m data_prep.span_qa --train train.jsonl --valid dev.jsonl --roberta-dir roberta.large --out data-bin/searchqa
"""
import argparse
import json
import os
from collections import Counter
from typing import Dict, List, Sequence

from kadapter_fairseq.errors import DataError, KAdapterError
from kadapter_fairseq.scoring.qa import SpanQARecord, read_span_qa, write_span_qa

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

DEFAULT_MAX_LEN = 256
DEFAULT_MAX_QUESTION_LEN = 64


def check_unique_ids(records: Sequence[SpanQARecord], path):
    seen = {}
    for rec in records:
        if rec.id in seen:
            raise DataError(path, rec.line, f"id {rec.id!r} appears twice in one split (first on line {seen[rec.id]})")
        seen[rec.id] = rec.line


def encode_split(records, bpe, max_len, max_question_len, training, counter: SkipCounter, stats: Counter):
    """``(kept_records, pairs)``: pairs are ``(question_index, paragraph_index, EncodedPair)``."""
    from kadapter_fairseq.tasks.span_qa import NO_SPAN, encode_pair

    kept, pairs = [], []
    for rec in progress(records, desc="encode", unit="q"):
        where = f"id {rec.id} (line {rec.line})"
        encoded = []
        for j, paragraph in enumerate(rec.paragraphs):
            if not paragraph.strip():
                stats["empty paragraphs dropped"] += 1
                continue
            pair = encode_pair(bpe, rec.question, paragraph, rec.answers, max_len, max_question_len, keep_answer=training)
            if training and pair.positions == NO_SPAN:
                if pair.has_answer:
                    stats["training pairs dropped: answer longer than the window"] += 1
                continue
            encoded.append((j, pair))
        has_answer = any(p.positions != NO_SPAN for _, p in encoded)
        if not encoded and not training:
            stats["questions without a usable paragraph (kept for evaluation)"] += 1
        if not has_answer:
            if training:
                counter.skip("no paragraph contains an answer", where)
                continue
            stats["questions with no answer in their paragraphs (kept for evaluation)"] += 1
        counter.keep()
        q = len(kept)
        kept.append(rec)
        for j, pair in encoded:
            stats["pairs"] += 1
            stats["pairs truncated"] += pair.truncated
            pairs.append((q, j, pair))
    return kept, pairs


def subsample_questions(kept, pairs, subsample: Subsample):
    """The training questions ``subsample`` keeps, with their pairs (question indices renumbered)."""
    chosen, record = subsample.apply(list(range(len(kept))))
    if record is None:
        return kept, pairs, None
    renumber = {q: i for i, q in enumerate(chosen)}
    return [kept[q] for q in chosen], [(renumber[q], j, p) for q, j, p in pairs if q in renumber], record


def write_span_qa_data(out_dir, splits: Dict[str, List[SpanQARecord]], bpe, dict_path, max_len=DEFAULT_MAX_LEN,
                       max_question_len=DEFAULT_MAX_QUESTION_LEN, workers=1, prep_info=None, subsample=None):
    """Write the binarized span_qa layout (see kadapter_fairseq/tasks/span_qa.py); returns the per-split report.

    ``subsample`` (a ``Subsample``) picks among the training questions that kept an answer-bearing
    paragraph, so its counts are of usable training questions."""
    from kadapter_fairseq.data.binarize import binarize_lines

    os.makedirs(out_dir, exist_ok=True)
    report, piece_lines = {}, {}
    subsampled = None
    for split, records in splits.items():
        counter, stats = SkipCounter(), Counter()
        kept, pairs = encode_split(records, bpe, max_len, max_question_len, split == "train", counter, stats)
        if split == "train" and subsample is not None:
            kept, pairs, subsampled = subsample_questions(kept, pairs, subsample)
        write_span_qa(os.path.join(out_dir, f"{split}.jsonl"), kept)
        piece_lines[split] = [" ".join(p.pieces) for _, _, p in pairs]
        write_lines(os.path.join(out_dir, f"{split}.positions"), (f"{p.positions[0]} {p.positions[1]}" for _, _, p in pairs))
        write_lines(os.path.join(out_dir, f"{split}.ids"), (kept[q].id for q, _, _ in pairs))
        write_lines(
            os.path.join(out_dir, f"{split}.pairs.jsonl"),
            (json.dumps({"q": q, "paragraph": j, "offset": p.offset, "spans": p.spans}) for q, j, p in pairs),
        )
        report[split] = {**counter.as_dict(), "questions_read": len(records), "stats": dict(sorted(stats.items()))}
        print(counter.summary(f"{split}: {len(records)} questions"))
        for key, n in sorted(stats.items()):
            print(f"  {key}: {n}")
        if split == "train" and subsampled:
            print("  " + describe(subsampled))
    binarize_lines(piece_lines, os.path.join(out_dir, "input0"), dict_path, workers=workers)
    info = dict(prep_info or {})
    info.update(max_len=max_len, max_question_len=max_question_len, splits=report, subsample=subsampled)
    write_prep_json(out_dir, info)
    return report


def add_span_qa_args(parser, layout_only=False):
    parser.add_argument("--out", required=True, help="output data directory")
    if layout_only:
        parser.add_argument("--layout-only", action="store_true",
                            help="write <out>/{split}.jsonl in the span_qa layout only (no tokenizer needed)")
    parser.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="longest sequence, <s> and </s> included")
    parser.add_argument("--max-question-len", type=int, default=DEFAULT_MAX_QUESTION_LEN, help="question pieces kept")
    add_subsample_args(parser)
    add_tokenizer_args(parser)


def finish_from_args(args, splits, sources, converter):
    """Write ``splits`` (records in the span_qa layout): the JSONL only with ``--layout-only``,
    else tokenized and binarized with the shared options."""
    subsample = Subsample.from_args(args)
    subsample.require_train(splits)
    if getattr(args, "layout_only", False):
        if subsample.requested:
            # which questions are usable is known only once they are tokenized
            raise KAdapterError("--layout-only writes every question: subsample when binarizing "
                                "(python -m data_prep.span_qa --train ... --fraction/--max-examples)")
        os.makedirs(args.out, exist_ok=True)
        for split, records in splits.items():
            write_span_qa(os.path.join(args.out, f"{split}.jsonl"), records)
        print(f"written span_qa layout -> {args.out}")
        return
    bpe, bpe_files, dict_path = tokenizer_from_args(args)
    write_span_qa_data(
        args.out, splits, bpe, dict_path, args.max_len, args.max_question_len, workers=args.workers,
        prep_info={"converter": converter, "sources": sources, "tokenizer": bpe_files.as_args(), "dict": dict_path},
        subsample=subsample,
    )
    print(f"written -> {args.out}")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.span_qa", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for split in SPLITS:
        p.add_argument(f"--{split}", help=f"{split} split in the span_qa JSONL layout")
    add_span_qa_args(p)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    sources = split_sources(args, parser)
    splits = {}
    for split, path in sources.items():
        splits[split] = list(read_span_qa(path))
        check_unique_ids(splits[split], path)
    finish_from_args(args, splits, sources, "data_prep.span_qa")
    return 0


if __name__ == "__main__":
    run_main(main)
