"""Prediction files (JSON lines) and their alignment with a gold file.

Scorers must work on prediction files written by any system, so every check
that a hand-written file can fail (bad JSON, no ``id``, the wrong value type,
an id given twice, an id the gold does not have) is a ``DataError`` naming the
prediction file and line instead of a skewed score.
"""
import json
from typing import Callable, Dict, Hashable, List, Optional, Tuple

from ..data.json_records import iter_json_lines
from ..errors import DataError

# A validator returns None when a value is acceptable, else what is wrong with it.
Validator = Callable[[object], Optional[str]]


class Predictions(dict):
    """``id -> value`` (ids as strings) that remembers where each id was read."""

    def __init__(self, path=None):
        super().__init__()
        self.path = path
        self.line_of: Dict[str, int] = {}


def is_label(value) -> Optional[str]:
    return None if isinstance(value, str) else f"expected a label string, got {json.dumps(value)}"


def is_label_list(value) -> Optional[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    return f"expected a list of label strings, got {json.dumps(value)}"


def is_int(value) -> Optional[str]:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f"expected an integer, got {json.dumps(value)}"


def is_text(value) -> Optional[str]:
    return None if isinstance(value, str) else f"expected a string, got {json.dumps(value)}"


def normalize_id(value) -> str:
    """Ids compare as strings, so ``7`` in one file matches ``"7"`` in another."""
    return value if isinstance(value, str) else json.dumps(value)


def read_predictions(path, field: str, validate: Optional[Validator] = None) -> Predictions:
    """Read ``{"id": ..., field: ...}`` objects, one a line; blank lines are allowed."""
    preds = Predictions(str(path))
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(path, None, f"cannot read prediction file: {e.strerror}") from None
    with f:
        for lineno, obj in iter_json_lines(path, f):
            if not isinstance(obj, dict):
                raise DataError(path, lineno, "expected a JSON object like {\"id\": ..., \"%s\": ...}" % field)
            if "id" not in obj:
                raise DataError(path, lineno, "prediction has no \"id\" field")
            if field not in obj:
                raise DataError(path, lineno, f"prediction has no {field!r} field")
            if validate is not None:
                problem = validate(obj[field])
                if problem:
                    raise DataError(path, lineno, f"field {field!r}: {problem}")
            key = normalize_id(obj["id"])
            if key in preds:
                raise DataError(path, lineno, f"id {key!r} already predicted on line {preds.line_of[key]}")
            preds[key] = obj[field]
            preds.line_of[key] = lineno
    return preds


def align(gold: Dict[Hashable, object], preds: Dict[Hashable, object]) -> Tuple[List[tuple], int]:
    """Pair every gold value with its prediction (``None`` when missing), in gold order.

    Returns ``(pairs, missing)``. A prediction whose id is not in the gold is an
    error: it usually means the wrong gold file, and scoring it would hide that.
    """
    gold_by_key = {normalize_id(k): v for k, v in gold.items()}
    pred_by_key = {normalize_id(k): v for k, v in preds.items()}
    unknown = [k for k in pred_by_key if k not in gold_by_key]
    if unknown:
        path = getattr(preds, "path", None)
        line = getattr(preds, "line_of", {}).get(unknown[0])
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DataError(path, line, f"prediction for id {unknown[0]!r} which is not in the gold file{more}")
    pairs, missing = [], 0
    for key, value in gold_by_key.items():
        if key in pred_by_key:
            pairs.append((value, pred_by_key[key]))
        else:
            pairs.append((value, None))
            missing += 1
    return pairs, missing
