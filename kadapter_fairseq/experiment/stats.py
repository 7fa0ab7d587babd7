"""Seed statistics for experiment tables (standard library only).

The rule the reports state: a difference between two variants *exceeds the seed noise* when
Welch's two-sided t-test over their per-seed scores gives p < 0.05 (``ALPHA``). Welch's test does
not assume equal variances and uses the seed counts, so three noisy seeds need a large gap while
many tight seeds need a smaller one. With fewer than two seeds on either side there is no noise
estimate and no verdict.

Intervals over test examples (for studies that keep per-example predictions) are
``study.bootstrap_diff``.
"""
import math
from typing import Optional, Sequence, Tuple

ALPHA = 0.05
RULE = (f"Welch's two-sided t-test over the per-seed scores, p < {ALPHA:g} (needs at least 2 seeds per variant)")


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def sample_std(values: Sequence[float]) -> Optional[float]:
    """Standard deviation with n - 1 in the denominator; None for fewer than two values."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Tuple[float, float, float]]:
    """``(t, df, two-sided p)`` of Welch's test of mean(a) != mean(b); None without two values on each side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = sample_std(a) ** 2 / len(a), sample_std(b) ** 2 / len(b)
    diff = mean(a) - mean(b)
    if va + vb == 0.0:
        if diff == 0.0:
            return 0.0, float(len(a) + len(b) - 2), 1.0
        return math.copysign(math.inf, diff), float(len(a) + len(b) - 2), 0.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    return t, df, t_two_sided_p(t, df)


def compare(a: Sequence[float], b: Sequence[float]) -> dict:
    """Difference of means and the seed-noise verdict: ``{"diff", "t", "df", "p", "exceeds_noise"}``
    (``exceeds_noise`` is None when there is too little to judge)."""
    out = {"diff": mean(a) - mean(b), "t": None, "df": None, "p": None, "exceeds_noise": None}
    test = welch(a, b)
    if test is not None:
        out.update(t=test[0], df=test[1], p=test[2], exceeds_noise=test[2] < ALPHA)
    return out
