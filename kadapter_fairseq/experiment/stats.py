"""Seed statistics for experiment tables.

The rule the reports state: a difference between two variants *exceeds the seed noise* when
Welch's two-sided t-test over their per-unit scores gives p < 0.05 (``ALPHA``); a unit is a
downstream seed, or a knowledge seed when the experiment trains its knowledge with several
(``report.units``). Welch's test does not assume equal variances and uses the unit counts, so three
noisy seeds need a large gap while many tight seeds need a smaller one. With fewer than two units
on either side there is no noise estimate and no verdict. The test is ``scipy.stats.ttest_ind``
with ``equal_var=False``.

A score compared with a fixed level (a chance baseline) uses the one-sample t-test over its units
(``compare_to``), which is what Welch's test becomes when one side does not vary. Intervals over
test examples (for studies that keep per-example predictions) are ``study.bootstrap_diff``.
"""
import math
from typing import Optional, Sequence, Tuple

ALPHA = 0.05


def rule(by_knowledge_seed: bool = False) -> str:
    if by_knowledge_seed:
        return (f"Welch's two-sided t-test over the per-knowledge-seed scores (each the mean over its downstream "
                f"seeds), p < {ALPHA:g} (needs at least 2 knowledge seeds per variant)")
    return f"Welch's two-sided t-test over the per-seed scores, p < {ALPHA:g} (needs at least 2 seeds per variant)"


RULE = rule()


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def sample_std(values: Sequence[float]) -> Optional[float]:
    """Standard deviation with n - 1 in the denominator; None for fewer than two values."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t as student_t

    return float(2.0 * student_t.sf(abs(t), df))


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Tuple[float, float, float]]:
    """``(t, df, two-sided p)`` of Welch's test of mean(a) != mean(b); None without two values on each side."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = mean(a) - mean(b)
    if sample_std(a) == 0.0 and sample_std(b) == 0.0:  # no spread at all: scipy's t is undefined (0/0)
        if diff == 0.0:
            return 0.0, float(len(a) + len(b) - 2), 1.0
        return math.copysign(math.inf, diff), float(len(a) + len(b) - 2), 0.0
    import warnings

    from scipy.stats import ttest_ind

    with warnings.catch_warnings():
        # scipy warns when one side's values are (nearly) equal; the test is still defined by the other side
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.df), float(res.pvalue)


def one_sample(values: Sequence[float], reference: float) -> Optional[Tuple[float, float, float]]:
    """``(t, df, two-sided p)`` of the one-sample t-test of mean(values) != ``reference`` (a fixed level such as a
    chance baseline); None with fewer than two values. Welch's test with one side a constant is this test."""
    if len(values) < 2:
        return None
    diff = mean(values) - reference
    s = sample_std(values)
    df = float(len(values) - 1)
    if s == 0.0:
        if diff == 0.0:
            return 0.0, df, 1.0
        return math.copysign(math.inf, diff), df, 0.0
    t = diff / (s / math.sqrt(len(values)))
    return t, df, t_two_sided_p(t, df)


def compare_to(values: Sequence[float], reference: float) -> dict:
    """``compare`` against a fixed reference: the one-sample test instead of Welch's."""
    out = {"diff": mean(values) - reference, "t": None, "df": None, "p": None, "exceeds_noise": None}
    test = one_sample(values, reference)
    if test is not None:
        out.update(t=test[0], df=test[1], p=test[2], exceeds_noise=test[2] < ALPHA)
    return out


def compare(a: Sequence[float], b: Sequence[float]) -> dict:
    """Difference of means and the seed-noise verdict: ``{"diff", "t", "df", "p", "exceeds_noise"}``
    (``exceeds_noise`` is None when there is too little to judge)."""
    out = {"diff": mean(a) - mean(b), "t": None, "df": None, "p": None, "exceeds_noise": None}
    test = welch(a, b)
    if test is not None:
        out.update(t=test[0], df=test[1], p=test[2], exceeds_noise=test[2] < ALPHA)
    return out
