"""Name -> scorer registry behind ``kadapter-score --task NAME``.

A scorer is ``fn(gold_path, pred_path) -> dict`` returning its metrics (fractions
in [0, 1], Python floats) plus ``n`` (gold examples scored) and ``missing``
(gold ids without a prediction, each scored as wrong).
"""
from typing import Callable, Dict

from ..errors import KAdapterError

Scorer = Callable[[str, str], dict]
SCORERS: Dict[str, Scorer] = {}


def register_scorer(name: str):
    def wrap(fn: Scorer) -> Scorer:
        if name in SCORERS and SCORERS[name] is not fn:
            raise KAdapterError(f"a scorer named {name!r} is already registered ({SCORERS[name].__module__})")
        SCORERS[name] = fn
        return fn

    return wrap
