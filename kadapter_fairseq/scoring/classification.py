"""Classification metrics (entity typing, relation classification) and their scorers.

The functions here are the only implementation of these metrics: the training
criterions log the summable counts defined below and call the same functions
in ``reduce_metrics``, so a validation F1 and a ``kadapter-score`` F1 agree.

Conventions (documented in docs/downstream.md):
- Loose micro (OpenEntity, FIGER): P = sum|pred & gold| / sum|pred|, R = sum|pred & gold| / sum|gold|;
  P = 0 when nothing at all is predicted.
- Loose macro (FIGER): mean over *all* examples of the per-example P and R
  (an example with no predicted type contributes P = 0, one with no gold type
  R = 0), each example counted exactly once; F1 from the two means.
- Strict accuracy: predicted set equals gold set.
- TACRED (the standard scorer): a guess counts when it is not ``no_relation``,
  a gold when it is not ``no_relation``, correct when guess == gold;
  P = 1 when there are no guesses (as the standard scorer), R = 0 without golds.
- A gold id without a prediction is wrong: no types for typing; for TACRED a
  guess that matches nothing (it costs precision, and recall when the gold is
  a relation).
"""
from typing import Dict, Hashable, Iterable, Optional, Tuple

from ..data.downstream import read_relation_records, read_typing_records
from .predictions import align, is_label, is_label_list, read_predictions
from .registry import register_scorer

NO_RELATION = "no_relation"
TYPING_COUNT_KEYS = ("n", "n_exact", "tp", "fp", "fn", "sum_p", "sum_r")


def f1_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def prf(tp: float, fp: float, fn: float, empty_precision: float = 0.0) -> Tuple[float, float, float]:
    """Precision, recall, F1 from counts; ``empty_precision`` when nothing was guessed."""
    precision = float(tp / (tp + fp)) if tp + fp > 0 else float(empty_precision)
    recall = float(tp / (tp + fn)) if tp + fn > 0 else 0.0
    return precision, recall, f1_score(precision, recall)


# --------------------------------------------------------------------------- entity typing

def typing_counts(pairs: Iterable[Tuple[Iterable[Hashable], Optional[Iterable[Hashable]]]]) -> Dict[str, float]:
    """Summable counts over ``(gold_types, predicted_types or None)`` pairs.

    ``tp/fp/fn`` are type-level (loose micro), ``sum_p/sum_r`` the per-example
    precision/recall sums (loose macro), ``n_exact`` exact set matches.
    """
    counts = dict.fromkeys(TYPING_COUNT_KEYS, 0.0)
    for gold, pred in pairs:
        gold, pred = set(gold), set(pred or ())
        hit = len(gold & pred)
        counts["n"] += 1
        counts["n_exact"] += float(gold == pred)
        counts["tp"] += hit
        counts["fp"] += len(pred) - hit
        counts["fn"] += len(gold) - hit
        counts["sum_p"] += hit / len(pred) if pred else 0.0
        counts["sum_r"] += hit / len(gold) if gold else 0.0
    return counts


def loose_micro(tp, fp, fn) -> Tuple[float, float, float]:
    return prf(tp, fp, fn, empty_precision=0.0)


def loose_macro(sum_p, sum_r, n) -> Tuple[float, float, float]:
    if n == 0:
        return 0.0, 0.0, 0.0
    precision, recall = float(sum_p / n), float(sum_r / n)
    return precision, recall, f1_score(precision, recall)


def strict_accuracy(n_exact, n) -> float:
    return float(n_exact / n) if n else 0.0


def typing_metrics(counts: Dict[str, float]) -> Dict[str, float]:
    """Every typing metric from :func:`typing_counts` (or their sums over batches)."""
    p, r, f = loose_micro(counts["tp"], counts["fp"], counts["fn"])
    mp, mr, mf = loose_macro(counts["sum_p"], counts["sum_r"], counts["n"])
    return {
        "precision": p, "recall": r, "f1": f,
        "macro_precision": mp, "macro_recall": mr, "macro_f1": mf,
        "strict_accuracy": strict_accuracy(counts["n_exact"], counts["n"]),
    }


# --------------------------------------------------------------------------- relations

def relation_example_counts(gold: Hashable, guess: Optional[Hashable], negative: Hashable = NO_RELATION) -> Tuple[int, int, int]:
    """``(tp, fp, fn)`` of one example as the standard TACRED scorer counts it.

    A wrong guess of a relation is a false positive and, when the gold is a
    relation, also a false negative. ``guess=None`` is a missing prediction: a
    guess that equals no label. Per-example counts are what a bootstrap over
    test examples resamples (``kadapter_fairseq/experiment/study.py``).
    """
    correct = guess is not None and guess == gold
    guessed = guess is None or guess != negative
    return int(guessed and correct), int(guessed and not correct), int(gold != negative and not correct)


def relation_counts(pairs: Iterable[Tuple[Hashable, Optional[Hashable]]], negative: Hashable = NO_RELATION) -> Dict[str, float]:
    """Standard TACRED counts summed over ``(gold, guess)`` pairs (see :func:`relation_example_counts`)."""
    tp = fp = fn = 0.0
    for gold, guess in pairs:
        a, b, c = relation_example_counts(gold, guess, negative)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {"tp": tp, "fp": fp, "fn": fn}


def relation_prf(tp, fp, fn) -> Tuple[float, float, float]:
    return prf(tp, fp, fn, empty_precision=1.0)


# --------------------------------------------------------------------------- scorers

def _score_typing(gold_path, pred_path, keys):
    """``keys`` maps output names to :func:`typing_metrics` names."""
    gold = {r.id: r.labels for r in read_typing_records(gold_path)}
    pairs, missing = align(gold, read_predictions(pred_path, "labels", is_label_list))
    metrics = typing_metrics(typing_counts(pairs))
    out = {name: metrics[key] for name, key in keys.items()}
    out.update(n=len(pairs), missing=missing)
    return out


@register_scorer("openentity")
def score_openentity(gold_path, pred_path) -> dict:
    return _score_typing(gold_path, pred_path, {"precision": "precision", "recall": "recall", "f1": "f1"})


@register_scorer("figer")
def score_figer(gold_path, pred_path) -> dict:
    return _score_typing(gold_path, pred_path, {"strict_accuracy": "strict_accuracy", "macro_f1": "macro_f1", "micro_f1": "f1"})


@register_scorer("tacred")
def score_tacred(gold_path, pred_path) -> dict:
    gold = {r.id: r.relation for r in read_relation_records(gold_path)}
    pairs, missing = align(gold, read_predictions(pred_path, "label", is_label))
    counts = relation_counts(pairs)  # a missing prediction (None) is a wrong guess
    precision, recall, f1 = relation_prf(counts["tp"], counts["fp"], counts["fn"])
    return {"precision": precision, "recall": recall, "f1": f1, "n": len(pairs), "missing": missing}
