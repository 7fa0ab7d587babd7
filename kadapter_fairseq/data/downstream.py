"""Raw records of the downstream classification datasets, as sequences to encode.

Entity typing (ERNIE/K-Adapter JSON: ``sent``, char ``start``/``end``, ``labels``)
and relation classification (TACRED JSON: ``token``, inclusive word spans,
``relation``) are read here once and used by the converters (data_prep), the
predictors and the scorers, so training, prediction and scoring see the same
ids, the same words and the same marked, truncated sequences.

Nothing here imports fairseq or torch: the scorer reads gold files through it.
"""
import json
from dataclasses import dataclass
from typing import Iterator, List, Sequence, Tuple

from ..errors import DataError
from .encoding import BOS_OFFSET, fit_window, mark_spans
from .json_records import bad_json, iter_json_records

# Penn Treebank escapes found in TACRED's tokens; the BPE was trained on raw text.
PTB_ESCAPES = {
    "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
    "``": '"', "''": '"',
}


def unescape_ptb(token: str) -> str:
    return PTB_ESCAPES.get(token, token)


class SkipRecord(ValueError):
    """A record that cannot become a training example; ``reason`` is the skip-counter key."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


# --------------------------------------------------------------------------- reading

def record_id(record: dict, index: int) -> str:
    """A record's id: its ``id`` field where it has one, else its 0-based position."""
    value = record.get("id", index) if isinstance(record, dict) else index
    return value if isinstance(value, str) else json.dumps(value)


def _field(record, name, kind, path, line, index):
    if not isinstance(record, dict):
        raise DataError(path, line, f"record {index}: expected a JSON object")
    if name not in record:
        raise DataError(path, line, f"record {index}: missing field {name!r}")
    value = record[name]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is list and ok:
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        what = {int: "an integer", str: "a string", list: "a list of strings"}[kind]
        raise DataError(path, line, f"record {index}: field {name!r} should be {what}, got {json.dumps(value)[:60]}")
    return value


@dataclass
class TypingRecord:
    id: str
    sent: str
    start: int  # character offsets, end exclusive
    end: int
    labels: List[str]
    path: str
    line: int
    index: int

    def words(self) -> Tuple[List[str], Tuple[int, int]]:
        """Whitespace words with the mention as its own words, and the mention's word span.

        Splitting at the character offsets first keeps a mention that starts or
        ends inside a whitespace token (``U.S.-based``) exactly as annotated.
        """
        if not (0 <= self.start < self.end <= len(self.sent)):
            raise SkipRecord("entity span outside the sentence", f"[{self.start}, {self.end}) in {len(self.sent)} characters")
        left = self.sent[: self.start].split()
        mention = self.sent[self.start : self.end].split()
        right = self.sent[self.end :].split()
        if not mention:
            raise SkipRecord("empty entity mention", f"[{self.start}, {self.end}) is whitespace")
        return left + mention + right, (len(left), len(left) + len(mention))


def read_typing_records(path) -> Iterator[TypingRecord]:
    for index, line, rec in iter_json_records(path):
        yield TypingRecord(
            id=record_id(rec, index),
            sent=_field(rec, "sent", str, path, line, index),
            start=_field(rec, "start", int, path, line, index),
            end=_field(rec, "end", int, path, line, index),
            labels=_field(rec, "labels", list, path, line, index),
            path=str(path),
            line=line,
            index=index,
        )


@dataclass
class RelationRecord:
    id: str
    tokens: List[str]
    subj: Tuple[int, int]  # word span, end exclusive
    obj: Tuple[int, int]
    relation: str
    path: str
    line: int
    index: int

    def words(self) -> Tuple[List[str], List[Tuple[int, int]]]:
        n = len(self.tokens)
        for name, (s, e) in (("subject", self.subj), ("object", self.obj)):
            if not (0 <= s < e <= n):
                raise SkipRecord("entity span outside the sentence", f"{name} words [{s}, {e - 1}] of {n}")
        if self.subj[0] < self.obj[1] and self.obj[0] < self.subj[1]:
            raise SkipRecord("subject and object overlap", f"subject {self.subj}, object {self.obj}")
        return [unescape_ptb(t) for t in self.tokens], [self.subj, self.obj]


def read_relation_records(path) -> Iterator[RelationRecord]:
    for index, line, rec in iter_json_records(path):
        get = lambda name, kind: _field(rec, name, kind, path, line, index)  # noqa: E731
        yield RelationRecord(
            id=record_id(rec, index),
            tokens=get("token", list),
            subj=(get("subj_start", int), get("subj_end", int) + 1),
            obj=(get("obj_start", int), get("obj_end", int) + 1),
            relation=get("relation", str),
            path=str(path),
            line=line,
            index=index,
        )


# --------------------------------------------------------------------------- encoding

@dataclass
class MarkedSequence:
    pieces: List[str]  # BPE pieces without <s>/</s>
    positions: List[int]  # sequence position (<s> = 0) of each span's opening marker
    truncated: bool


def encode_marked(word_encoder, words: Sequence[str], spans: Sequence[Tuple[int, int, str]], max_len: int) -> MarkedSequence:
    """Mark ``spans`` (word ``start, end_exclusive, marker``), encode, and fit ``max_len``.

    ``max_len`` counts ``<s>`` and ``</s>``. A too-long sequence is cut to a window
    that keeps every marked span with its markers; when the spans alone do not
    fit, ``SkipRecord("marked entities do not fit max_len")`` is raised.
    """
    marked, openings = mark_spans(words, spans)
    encoded = word_encoder.encode_words(marked)
    starts = encoded.word_starts + [len(encoded.pieces)]
    closings = [opening + (e - s) + 1 for opening, (s, e, _) in zip(openings, spans)]
    lo = min(starts[o] for o in openings)
    hi = max(starts[c + 1] for c in closings)
    budget = max_len - 2
    window = fit_window(len(encoded.pieces), (lo, hi), budget)
    if window is None:
        raise SkipRecord("marked entities do not fit max_len", f"{hi - lo} pieces > {budget}")
    w_start, w_end = window
    return MarkedSequence(
        pieces=encoded.pieces[w_start:w_end],
        positions=[starts[o] - w_start + BOS_OFFSET for o in openings],
        truncated=(w_end - w_start) < len(encoded.pieces),
    )


TYPING_MARKER = "@"
SUBJECT_MARKER = "@"
OBJECT_MARKER = "#"


def encode_typing(word_encoder, record: TypingRecord, max_len: int) -> MarkedSequence:
    """``@ mention @`` in its sentence; the head reads the first ``@``."""
    words, (s, e) = record.words()
    return encode_marked(word_encoder, words, [(s, e, TYPING_MARKER)], max_len)


def encode_relation(word_encoder, record: RelationRecord, max_len: int) -> MarkedSequence:
    """``@ subject @`` and ``# object #``; positions are ``[first @, first #]``."""
    words, (subj, obj) = record.words()
    return encode_marked(word_encoder, words, [(subj[0], subj[1], SUBJECT_MARKER), (obj[0], obj[1], OBJECT_MARKER)], max_len)


# --------------------------------------------------------------------------- writing

@dataclass
class EncodedExample:
    id: str
    pieces: List[str]
    positions: List[int]
    labels: List[str]  # one label (single-label tasks) or several (entity typing)


def encode_records(records, encode, labels_of, labels, skip, unknown_labels: str = "error"):
    """Encode raw records into ``EncodedExample``s; returns ``(examples, n_truncated)``.

    ``encode(record) -> MarkedSequence`` may raise ``SkipRecord``, which is passed
    to ``skip(reason, where)``. A label outside ``labels`` is a ``DataError``
    naming file, line and record, or with ``unknown_labels="skip"`` a counted skip.
    """
    examples, truncated = [], 0
    for record in records:
        where = f"{record.path}:{record.line} (record {record.index})"
        names = labels_of(record)
        unknown = [name for name in names if name not in labels]
        if unknown:
            if unknown_labels == "skip":
                skip("label not in the label set", where)
                continue
            shown = ", ".join(labels.labels[:10]) + (" ..." if len(labels) > 10 else "")
            raise DataError(record.path, record.line, f"record {record.index}: label {unknown[0]!r} is not in the label set "
                            f"({len(labels)} labels: {shown})")
        try:
            seq = encode(record)
        except SkipRecord as s:
            skip(s.reason, where)
            continue
        truncated += seq.truncated
        examples.append(EncodedExample(record.id, seq.pieces, seq.positions, list(names)))
    return examples, truncated


def write_classification_data(out_dir, splits, dict_path, labels, workers: int = 1):
    """Write the shared binarized layout for ``splits = {split: [EncodedExample, ...]}``.

    ``input0/`` (fairseq-preprocess of the pieces), ``labels.txt``, and per split
    ``.label`` (tab-separated labels), ``.positions`` and ``.ids``.
    """
    import os

    from .binarize import binarize_lines
    from .text_files import write_lines

    os.makedirs(out_dir, exist_ok=True)
    for split, examples in splits.items():
        write_lines(os.path.join(out_dir, f"{split}.positions"), (" ".join(map(str, ex.positions)) for ex in examples))
        write_lines(os.path.join(out_dir, f"{split}.label"), ("\t".join(ex.labels) for ex in examples))
        write_lines(os.path.join(out_dir, f"{split}.ids"), (ex.id for ex in examples))
    pieces = {split: (" ".join(ex.pieces) for ex in examples) for split, examples in splits.items()}
    binarize_lines(pieces, os.path.join(out_dir, "input0"), dict_path, workers=workers)
    labels.save(os.path.join(out_dir, "labels.txt"))


def read_prep_json(data_dir) -> dict:
    """The converter's record of how ``data_dir`` was built (``{}`` when absent)."""
    import os

    path = os.path.join(data_dir, "prep.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise bad_json(path, e.lineno, e, "the file") from None
