"""``reduce_metrics`` helpers for logging outputs that hold sums.

Every criterion here logs sums (of losses, counts) rather than averages, so
that the metrics derived from them are exact across batches and workers and
``logging_outputs_can_be_summed`` holds.
"""
import math

from fairseq import metrics, utils

from ..scoring.qa import fraction


def total(logging_outputs, key) -> float:
    return float(utils.item(sum(log.get(key, 0) for log in logging_outputs)))


def log_loss(logging_outputs, round: int) -> None:
    """``loss`` per ``sample_size`` unit, in bits as fairseq reports it (0 for an empty sample)."""
    sample_size = total(logging_outputs, "sample_size")
    metrics.log_scalar("loss", fraction(total(logging_outputs, "loss"), sample_size) / math.log(2), sample_size, round=round)


def log_sums(logging_outputs, keys) -> None:
    """``_<key>`` meters (hidden from the progress line) for ``log_derived`` to divide."""
    for key in keys:
        metrics.log_scalar_sum(f"_{key}", total(logging_outputs, key))
