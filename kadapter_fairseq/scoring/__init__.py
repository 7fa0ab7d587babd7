"""Scoring of prediction files against gold files in the datasets' own formats.

The scoring modules themselves use only the standard library (they read gold
files through ``kadapter_fairseq.data.downstream``); nothing here needs a model.
"""
from .predictions import Predictions, align, normalize_id, read_predictions
from .registry import SCORERS, register_scorer

__all__ = ["Predictions", "align", "normalize_id", "read_predictions", "SCORERS", "register_scorer"]
