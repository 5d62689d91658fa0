"""The statistics a comparison needs: summaries and Welch's t-test, with the standard library only.

The t distribution's CDF comes from the regularized incomplete beta function (a continued
fraction, as in Numerical Recipes' betacf); tests check it against scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None  # sample standard deviation; None for n = 1
    min: float
    max: float


def summarize(values) -> Summary:
    import statistics  # 5 ms with fractions and decimal: only for a group, not for every run

    values = [float(v) for v in values]
    return Summary(len(values), statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None,
                   min(values), max(values))


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float


def welch(a, b) -> Welch | None:
    """Welch's unequal-variance t-test of two samples; None when a side has fewer than 2 values."""
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return None
    va, vb = sa.std ** 2 / sa.n, sb.std ** 2 / sb.n
    if va + vb == 0:
        # No spread on either side: equal means are indistinguishable, different ones certain.
        return Welch(0.0 if sa.mean == sb.mean else math.copysign(math.inf, sb.mean - sa.mean), sa.n + sb.n - 2,
                     1.0 if sa.mean == sb.mean else 0.0)
    t = (sb.mean - sa.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va ** 2 / (sa.n - 1) if va else 0) + (vb ** 2 / (sb.n - 1) if vb else 0))
    return Welch(t, df, t_two_sided_p(t, df))
