"""Relation examples -> marked BPE pieces, marker positions, labels, binarized data.

Shared by the T-REx and FewRel converters. An example is a word list with a
subject span and an object span; the subject is wrapped in ``@ ... @`` and the
object in ``# ... #`` (docs/reference/kadapter.md §2.1) and the stored positions are those of the first
``@`` and the first ``#`` in ``<s> pieces </s>``.

Over-long examples (more than ``max_len`` positions with ``<s>`` and ``</s>``)
are cut to a window that keeps both marked mentions (``--long truncate``, the
default, as the authors truncate to 64) or skipped (``--long skip``); an example
whose marked mentions alone do not fit is always skipped and counted.
"""
import os
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from kadapter_fairseq.data.downstream import OBJECT_MARKER, SUBJECT_MARKER, SkipRecord, encode_marked
from kadapter_fairseq.data.labels import LabelVocabulary
from kadapter_fairseq.errors import KAdapterError

from . import common
from .common import SkipCounter

LONG_POLICIES = ("truncate", "skip")


class Skip(Exception):
    """An example that is dropped for a counted, named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RelationExample:
    id: str
    words: List[str]
    subject: Tuple[int, int]  # word span [start, end)
    object: Tuple[int, int]
    relation: str
    where: str  # "path:line", for skip reports
    group: str = ""  # examples sharing a group (a sentence) go to the same split


@dataclass
class EncodedRelation:
    pieces: List[str]
    positions: Tuple[int, int]  # first "@" and first "#", counting <s> at 0
    truncated: bool


def encode_relation(encoder, example: RelationExample, max_len: int, long: str = "truncate") -> EncodedRelation:
    """Mark, encode and fit one example; raises ``Skip`` with the reason it cannot be used."""
    spans = [(*example.subject, SUBJECT_MARKER), (*example.object, OBJECT_MARKER)]
    try:
        seq = encode_marked(encoder, example.words, spans, max_len)
    except SkipRecord:  # the marked mentions alone exceed max_len, so the example does too
        raise Skip("too_long" if long == "skip" else "mentions_too_far_apart_for_max_len") from None
    except ValueError as e:  # mark_spans: the mentions overlap or leave the sentence
        raise Skip("overlapping_mentions" if "overlap" in str(e) else "mention_outside_sentence") from None
    if seq.truncated and long == "skip":
        raise Skip("too_long")
    return EncodedRelation(seq.pieces, tuple(seq.positions), seq.truncated)


def filter_relations(examples: Sequence[RelationExample], counter: SkipCounter, min_count: int, drop: Sequence[str]):
    """Drop excluded relations and those with fewer than ``min_count`` examples (counted)."""
    counts = Counter(ex.relation for ex in examples)
    dropped = set(drop)
    kept = []
    for ex in examples:
        if ex.relation in dropped:
            counter.skip(f"relation_excluded_{ex.relation}", ex.where)
        elif counts[ex.relation] < min_count:
            counter.skip(f"relation_below_min_count_{min_count}", ex.where)
        else:
            kept.append(ex)
    return kept


def build_label_vocabulary(examples: Sequence[RelationExample]) -> LabelVocabulary:
    """Labels of the train split, most frequent first (ties by name) so ids are reproducible."""
    counts = Counter(ex.relation for ex in examples)
    return LabelVocabulary(sorted(counts, key=lambda r: (-counts[r], r)))


def write_relation_dataset(
    out_dir: str,
    splits,
    encoder,
    dict_path: str,
    max_len: int,
    counter: SkipCounter,
    long: str = "truncate",
    labels: Optional[LabelVocabulary] = None,
    workers: int = 1,
    prep_info: Optional[dict] = None,
):
    """Encode every split, binarize the pieces and write the side files.

    ``splits`` is ``{split: examples}`` or a ``SplitStream``; examples are encoded by
    ``workers`` processes and written as they come, so nothing grows with the input.
    The label vocabulary is ``labels`` if given, else built from the ``train``
    split (of a dict); examples of any split whose relation is not in it are counted and
    skipped. Returns the per-split number of examples written.
    """
    if labels is None:
        if isinstance(splits, common.SplitStream) or "train" not in splits:
            raise KAdapterError("a train split is needed to build the label set (or pass --labels)")
        labels = build_label_vocabulary(splits["train"])
    if len(labels) == 0:
        raise KAdapterError("no relation is left after filtering: nothing to write (lower --min-count?)")
    written = common.write_encoded_dataset(
        out_dir, splits, _encode_item, dict_path, counter, ("positions", "label", "ids"),
        {"task": "relation_pretrain", "max_len": max_len, "long_policy": long, "num_labels": len(labels)},
        workers=workers, prep_info=prep_info, encoder=encoder, max_len=max_len, long=long, labels=frozenset(labels.labels),
    )
    labels.save(os.path.join(out_dir, "labels.txt"))
    return written


def _encode_item(item, encoder, max_len, long, labels):
    """One ``(split, example)``: a skip reason, or its piece line, side lines (positions, label, id) and truncation flag."""
    ex = item[1]
    if ex.relation not in labels:
        return "relation_not_in_label_set"
    try:
        enc = encode_relation(encoder, ex, max_len, long)
    except Skip as s:
        return s.reason
    return " ".join(enc.pieces), (f"{enc.positions[0]} {enc.positions[1]}", ex.relation, ex.id), enc.truncated


def write_from_args(args, splits, tokenizer, counter: SkipCounter, title: str, prep_info: dict, labels=None):
    """``write_relation_dataset`` with the options of ``add_relation_args`` (see ``common.write_from_args``);
    ``labels``: the label set when the caller built it (a streaming converter), else ``--labels`` or the train split's."""
    if labels is None and args.labels:
        labels = LabelVocabulary.load(args.labels)
    return common.write_from_args(
        write_relation_dataset, args, splits, tokenizer, counter, title, {"min_count": args.min_count, **prep_info},
        labels=labels,
    )


def add_relation_args(parser, min_count_default: int = 50):
    parser.add_argument("--max-len", type=int, default=64, help="positions per example incl. <s> and </s> (default 64, the authors')")
    parser.add_argument("--long", choices=LONG_POLICIES, default="truncate",
                        help="over-long examples: cut to a window keeping both mentions (default) or skip them")
    parser.add_argument("--min-count", type=int, default=min_count_default,
                        help=f"drop relations with fewer examples than this (default {min_count_default})")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="share of examples for valid (default 0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the train/valid split")
    parser.add_argument("--labels", help="fixed label list (one relation per line) instead of the train split's")
