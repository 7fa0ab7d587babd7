"""Question answering: the gold formats, SQuAD-style normalisation, EM/F1, accuracy.

The same functions score prediction files (``kadapter-score``) and produce the
criterions' validation metrics, so a number logged during training and the
number the scorer prints for the same predictions cannot drift apart. The
readers of the two gold formats live here too because converters, predictors
and scorers must agree on ids and on what makes a record invalid:

- CosmosQA: the official CSV (``id,context,question,answer0..answer3,label``)
  or JSONL with the same fields;
- span_qa: JSONL ``{"id", "question", "paragraphs": [...], "answers": [...]}``,
  the layout data_prep.searchqa and data_prep.quasar write.

A record's id is its ``id`` field, else its 0-based position in the file.
Standard library only, like the rest of ``kadapter_fairseq.scoring``.
"""
import csv
import json
import os
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

from ..data.json_records import iter_json_objects
from ..errors import DataError, KAdapterError
from .predictions import align, is_int, is_text, normalize_id, read_predictions
from .registry import register_scorer

# --------------------------------------------------------------------------- metrics

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, squeeze whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> List[str]:
    return normalize_answer(text).split()


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = answer_tokens(prediction), answer_tokens(gold)
    if not pred or not ref:
        # both empty is a match, one empty a miss (EM says the same)
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def qa_scores(prediction: Optional[str], answers: Sequence[str]):
    """``(em, f1)`` of one predicted answer against all gold answers (best match counts).

    A missing prediction (``None``) or a question without gold answers scores 0.
    """
    if prediction is None:
        return 0.0, 0.0
    em = max((exact_match(prediction, gold) for gold in answers), default=0.0)
    f1 = max((token_f1(prediction, gold) for gold in answers), default=0.0)
    return em, f1


def fraction(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


# --------------------------------------------------------------------------- CosmosQA gold

COSMOSQA_CHOICES = 4
COSMOSQA_ANSWER_FIELDS = tuple(f"answer{k}" for k in range(COSMOSQA_CHOICES))


@dataclass
class CosmosQARecord:
    line: int  # 1-based line where the record starts
    id: str
    context: str
    question: str
    answers: List[str]
    label: Optional[int]


def cosmosqa_rows(path) -> Iterator[tuple]:
    """``(line, dict)`` per record of a CSV (with header row) or JSONL file."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.read(1)
        f.seek(0)
        is_jsonl = path.endswith((".jsonl", ".json")) or first == "{"
        if not is_jsonl:
            reader = csv.DictReader(f)
            start = 2  # the header is line 1
            for row in reader:
                yield start, row
                start = reader.line_num + 1
            return
        yield from iter_json_objects(path, f)


def _required_text(row, key, path, line):
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(path, line, f"missing {key}")
    if not isinstance(value, str):
        raise DataError(path, line, f"{key} should be a string, got {json.dumps(value)[:60]}")
    return value


def _cosmosqa_label(value, path, line):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        label = int(value)
    except (TypeError, ValueError):
        label = -1
    if isinstance(value, bool) or not 0 <= label < COSMOSQA_CHOICES or str(label) != str(value).strip():
        raise DataError(path, line, f"label {value!r} is not an answer index 0-{COSMOSQA_CHOICES - 1}")
    return label


def _record_id(row: dict, position: int) -> str:
    rid = row.get("id")
    return normalize_id(rid) if rid not in (None, "") else str(position)


def parse_cosmosqa_row(row: dict, path, line: int, position: int, require_label=False) -> CosmosQARecord:
    """One CosmosQA record; a missing context, question, answer (or required label) is a ``DataError``."""
    label = _cosmosqa_label(row.get("label"), path, line)
    if label is None and require_label:
        raise DataError(path, line, "missing label")
    return CosmosQARecord(
        line=line,
        id=_record_id(row, position),
        context=_required_text(row, "context", path, line),
        question=_required_text(row, "question", path, line),
        answers=[_required_text(row, key, path, line) for key in COSMOSQA_ANSWER_FIELDS],
        label=label,
    )


def read_cosmosqa(path, require_label=False) -> Iterator[CosmosQARecord]:
    """CosmosQA records from the official CSV or from JSONL (labels optional unless ``require_label``)."""
    path = str(path)
    if not os.path.isfile(path):
        raise KAdapterError(f"CosmosQA file not found: {path}")
    for position, (line, row) in enumerate(cosmosqa_rows(path)):
        yield parse_cosmosqa_row(row, path, line, position, require_label)


# --------------------------------------------------------------------------- span_qa gold


@dataclass
class SpanQARecord:
    line: int
    id: str
    question: str
    paragraphs: List[str]
    answers: List[str]

    def to_json(self) -> dict:
        return {"id": self.id, "question": self.question, "paragraphs": self.paragraphs, "answers": self.answers}


def _string_list(row, key, path, line):
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(path, line, f"{key} should be a list of strings, got {json.dumps(value)[:60]}")
    return value


def read_span_qa(path) -> Iterator[SpanQARecord]:
    """Records of the span_qa JSONL layout; a malformed line is a ``DataError`` naming it."""
    path = str(path)
    if not os.path.isfile(path):
        raise KAdapterError(f"span_qa file not found: {path}")
    with open(path, encoding="utf-8") as f:
        for position, (n, row) in enumerate(iter_json_objects(path, f)):
            yield SpanQARecord(
                line=n,
                id=_record_id(row, position),
                question=_required_text(row, "question", path, n),
                paragraphs=_string_list(row, "paragraphs", path, n),
                answers=_string_list(row, "answers", path, n),
            )


def write_span_qa(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- scorers


def _index_gold(records, path, what) -> dict:
    gold = {}
    for rec in records:
        if rec.id in gold:
            raise DataError(path, rec.line, f"id {rec.id!r} appears twice in the {what} gold file (first on line {gold[rec.id].line})")
        gold[rec.id] = rec
    return gold


@register_scorer("cosmosqa")
def score_cosmosqa(gold_path, pred_path) -> dict:
    """Accuracy of predicted answer indices (``{"id", "label"}``) against a CosmosQA CSV/JSONL file."""
    gold = _index_gold(read_cosmosqa(gold_path, require_label=True), gold_path, "CosmosQA")
    preds = read_predictions(pred_path, "label", validate=is_int)
    pairs, missing = align({key: rec.label for key, rec in gold.items()}, preds)
    correct = sum(1 for label, predicted in pairs if predicted is not None and predicted == label)
    return {"accuracy": fraction(correct, len(pairs)), "n": len(pairs), "missing": missing}


@register_scorer("span_qa")
def score_span_qa(gold_path, pred_path) -> dict:
    """EM and F1 (best over gold answers) of ``{"id", "answer"}`` against the span_qa JSONL layout."""
    gold = _index_gold(read_span_qa(gold_path), gold_path, "span_qa")
    for rec in gold.values():
        if not rec.answers:
            raise DataError(gold_path, rec.line, f"record {rec.id!r} has no gold answers to score against")
    preds = read_predictions(pred_path, "answer", validate=is_text)
    pairs, missing = align({key: rec.answers for key, rec in gold.items()}, preds)
    em = f1 = 0.0
    for answers, predicted in pairs:
        e, f = qa_scores(predicted, answers)
        em += e
        f1 += f
    return {"exact_match": fraction(em, len(pairs)), "f1": fraction(f1, len(pairs)), "n": len(pairs), "missing": missing}
