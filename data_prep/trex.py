"""T-REx JSON documents -> relation-classification data for the factual adapter.

Input: T-REx-schema documents (a JSON array per file, as released, or JSON
lines): ``text``, ``triples`` with ``subject``/``object`` character
``boundaries`` and a ``predicate`` URI, optionally ``sentences_boundaries`` and
``words_boundaries``. Where sentence boundaries are missing the text is split
with a rule-based splitter; where word boundaries are missing words are runs of
letters/digits or single punctuation marks.

A triple is kept only when both mentions lie in one sentence and start and end
on word boundaries (docs/reference/kadapter.md §2.1). P31 ("instance of") and relations with fewer
than ``--min-count`` examples are dropped; the rest is split 90/10 by a seeded
hash of (document, sentence), so all triples of a sentence share a split.

The input is streamed, in two passes (counts and split first, then encoding), so memory stays
flat as it grows (12 bytes per triple; a JSON-array file is parsed whole, a JSON-lines file
line by line); ``--workers N`` encodes with N processes, with output identical to one worker.

Example:
    python -m data_prep.trex trex.jsonl --roberta-dir roberta.large \\
        --out data-bin/trex --min-count 50
"""
import argparse
import re
from array import array
from typing import List, Optional, Sequence, Tuple

from kadapter_fairseq.data.labels import LabelVocabulary
from kadapter_fairseq.errors import DataError

from .common import (
    SkipCounter,
    SplitStream,
    add_tokenizer_args,
    progress,
    read_json_records,
    run_main,
    seeded_split,
    split_hash,
    tokenizer_from_args,
    valid_hash_cutoff,
)
from .relations import RelationExample, add_relation_args, write_from_args

WORD_RE = re.compile(r"\w+|[^\w\s]")
# a sentence ends at . ! ? (plus closing quotes/brackets) followed by space and an upper-case letter,
# a digit or an opening quote; or at a line break
BOUNDARY_RE = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|\n+")
ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "inc", "ltd", "co", "corp", "no", "vol",
    "fig", "gen", "gov", "sen", "rep", "lt", "col", "capt", "sgt", "mt", "ft", "approx", "est", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "e.g", "i.e", "u.s", "u.k",
}


def split_sentences(text: str) -> List[Tuple[int, int]]:
    """Character spans of the sentences of ``text`` (rule-based; abbreviations and initials kept)."""
    spans, start = [], 0
    for m in BOUNDARY_RE.finditer(text):
        if text[m.start()] == ".":
            before = re.search(r"([\w.]+)$", text[start:m.start()])
            token = before.group(1).lower() if before else ""
            if token in ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                continue
        end = m.start() + len(m.group(0).rstrip())
        if text[start:end].strip():
            spans.append((start, end))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def word_spans(text: str, start: int, end: int) -> List[Tuple[int, int]]:
    return [(start + m.start(), start + m.end()) for m in WORD_RE.finditer(text[start:end])]


def _boundaries(mention, path, line, what) -> Optional[Tuple[int, int]]:
    if not isinstance(mention, dict):
        raise DataError(path, line, f"triple {what} is not an object")
    b = mention.get("boundaries")
    if b is None:
        return None
    if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, int) for x in b)):
        raise DataError(path, line, f"triple {what} boundaries must be [start, end] integers, got {b!r}")
    return b[0], b[1]


def _relation_id(predicate, path, line) -> str:
    uri = predicate.get("uri") if isinstance(predicate, dict) else None
    if not isinstance(uri, str) or not uri:
        raise DataError(path, line, "triple predicate has no uri")
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _find_sentence(sentences, s, e) -> Optional[int]:
    for i, (a, b) in enumerate(sentences):
        if a <= s and e <= b:
            return i
    return None


def document_examples(doc, path: str, line: int, counter: SkipCounter) -> List[RelationExample]:
    """The usable triples of one document; every dropped triple is counted with its reason."""
    where = f"{path}:{line}"
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str) or not isinstance(doc.get("triples"), list):
        raise DataError(path, line, "not a T-REx document: needs a 'text' string and a 'triples' list")
    text = doc["text"]
    doc_id = str(doc.get("docid", doc.get("id", line)))
    if doc.get("sentences_boundaries"):
        sentences = [tuple(b) for b in doc["sentences_boundaries"]]
    else:
        sentences = split_sentences(text)
    given_words = [tuple(b) for b in doc["words_boundaries"]] if doc.get("words_boundaries") else None
    words_cache = {}
    examples = []
    for t_index, triple in enumerate(doc["triples"]):
        if not isinstance(triple, dict):
            raise DataError(path, line, f"triple {t_index} is not an object")
        relation = _relation_id(triple.get("predicate"), path, line)
        subj = _boundaries(triple.get("subject"), path, line, "subject")
        obj = _boundaries(triple.get("object"), path, line, "object")
        if subj is None or obj is None:
            counter.skip("mention_without_boundaries", where)
            continue
        if any(not (0 <= s < e <= len(text)) for s, e in (subj, obj)):
            counter.skip("boundaries_outside_text", where)
            continue
        surface = [m.get("surfaceform") for m in (triple["subject"], triple["object"])]
        if any(sf is not None and text[s:e] != sf for sf, (s, e) in zip(surface, (subj, obj))):
            counter.skip("surface_form_mismatch", where)
            continue
        si, oi = _find_sentence(sentences, *subj), _find_sentence(sentences, *obj)
        if si is None or oi is None:
            counter.skip("mention_crosses_sentence_boundary", where)
            continue
        if si != oi:
            counter.skip("mentions_in_different_sentences", where)
            continue
        if si not in words_cache:
            a, b = sentences[si]
            spans = [w for w in given_words if a <= w[0] and w[1] <= b] if given_words else word_spans(text, a, b)
            words_cache[si] = (spans, {s: i for i, (s, _) in enumerate(spans)}, {e: i for i, (_, e) in enumerate(spans)})
        spans, by_start, by_end = words_cache[si]
        word_span = []
        for s, e in (subj, obj):
            if s in by_start and e in by_end and by_start[s] <= by_end[e]:
                word_span.append((by_start[s], by_end[e] + 1))
        if len(word_span) != 2:
            counter.skip("mention_not_word_aligned", where)
            continue
        examples.append(
            RelationExample(
                id=f"{doc_id}:{t_index}",
                words=[text[s:e] for s, e in spans],
                subject=word_span[0],
                object=word_span[1],
                relation=relation,
                where=where,
                group=f"{doc_id}:{si}",
            )
        )
    return examples


def split_examples(examples: Sequence[RelationExample], valid_fraction: float, seed: int):
    valid_groups = seeded_split((ex.group for ex in examples), valid_fraction, seed)
    splits = {"train": [], "valid": []}
    for ex in examples:
        splits["valid" if ex.group in valid_groups else "train"].append(ex)
    return splits


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.trex", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="T-REx JSON (array) or JSON-lines files")
    p.add_argument("--out", required=True, help="output data directory (input0/, labels.txt, *.label, *.positions, ...)")
    p.add_argument("--drop-relations", default="P31", help="comma-separated relations to drop (default P31)")
    add_relation_args(p)
    add_tokenizer_args(p)
    return p


def read_documents(paths: Sequence[str], counter: SkipCounter, desc: str = "read"):
    """The usable triples of every document of ``paths``, one list per document, in input order."""
    for path in paths:
        for line, doc in progress(read_json_records(path), desc=f"{desc} {path}", unit="doc"):
            yield document_examples(doc, path, line, counter)


def stream_splits(paths: Sequence[str], counter: SkipCounter, min_count: int, drop: Sequence[str],
                  valid_fraction: float, seed: int, labels: Optional[LabelVocabulary] = None):
    """``filter_relations`` + ``split_examples`` + the train split's label set, in two passes over
    the input instead of a list of every triple (T-REx has millions).

    The first pass keeps 12 bytes per triple (its relation's index and its sentence's split hash)
    and counts the documents' skips; the second yields ``(split, example)`` pairs and counts the
    relation filter's skips. Returns ``(documents, SplitStream, labels)``; the output equals that of
    the list-based functions (splits as ``seeded_split``, labels as ``build_label_vocabulary``).
    """
    import numpy as np

    index, relation_ids, hashes, n_docs = {}, array("i"), array("Q"), 0
    for examples in read_documents(paths, counter):
        n_docs += 1
        for ex in examples:
            relation_ids.append(index.setdefault(ex.relation, len(index)))
            hashes.append(split_hash(ex.group, seed))
    names = list(index)
    rel = np.frombuffer(relation_ids, dtype=np.int32) if relation_ids else np.zeros(0, np.int32)
    hash_arr = np.frombuffer(hashes, dtype=np.uint64) if hashes else np.zeros(0, np.uint64)
    counts = np.bincount(rel, minlength=len(names))
    dropped = set(drop)
    usable = np.array([r not in dropped and counts[i] >= min_count for i, r in enumerate(names)], dtype=bool)
    kept = usable[rel] if len(names) else np.zeros(0, bool)
    cutoff = valid_hash_cutoff(hash_arr[kept], valid_fraction)
    valid = hash_arr <= np.uint64(cutoff) if cutoff is not None else np.zeros(len(hash_arr), bool)
    if labels is None:
        train_counts = np.bincount(rel[kept & ~valid], minlength=len(names))
        labels = LabelVocabulary(sorted((r for i, r in enumerate(names) if train_counts[i]), key=lambda r: (-train_counts[index[r]], r)))

    def pairs():
        n = 0
        for examples in read_documents(paths, SkipCounter(), desc="encode"):  # skips were counted in the first pass
            for ex in examples:
                i, n = n, n + 1
                if ex.relation in dropped:
                    counter.skip(f"relation_excluded_{ex.relation}", ex.where)
                elif counts[rel[i]] < min_count:
                    counter.skip(f"relation_below_min_count_{min_count}", ex.where)
                else:
                    yield ("valid" if valid[i] else "train"), ex

    return n_docs, SplitStream(["train", "valid"], pairs()), labels


def main(argv=None):
    args = build_parser().parse_args(argv)
    tokenizer = tokenizer_from_args(args)
    counter = SkipCounter()
    drop = [r for r in args.drop_relations.split(",") if r]
    fixed_labels = LabelVocabulary.load(args.labels) if args.labels else None
    n_docs, splits, labels = stream_splits(args.inputs, counter, args.min_count, drop, args.valid_fraction, args.seed, fixed_labels)
    write_from_args(args, splits, tokenizer, counter, f"T-REx triples from {n_docs} documents",
                    {"converter": "data_prep.trex", "sources": args.inputs, "documents": n_docs, "dropped_relations": drop},
                    labels=labels)
    return 0


if __name__ == "__main__":
    run_main(main)
