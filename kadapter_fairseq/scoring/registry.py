"""Name -> scorer registry behind ``kadapter-score --task NAME``.

A scorer is ``fn(gold_path, pred_path) -> dict`` returning its metrics (fractions
in [0, 1], Python floats) plus ``n`` (gold examples scored) and ``missing``
(gold ids without a prediction, each scored as wrong).
"""
from typing import Callable, Dict

from ..registry import registration

Scorer = Callable[[str, str], dict]
SCORERS: Dict[str, Scorer] = {}
register_scorer = registration(SCORERS, "scorer")
