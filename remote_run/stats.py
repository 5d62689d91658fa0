"""The statistics a comparison needs: summaries and Welch's t-test, with the standard library only.

The t distribution's CDF comes from the regularized incomplete beta function (a continued
fraction, as in Numerical Recipes' betacf); tests check it against scipy.
"""

from __future__ import annotations

import functools
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


# ------------------------------------------------------------------------ paired runs, power, several metrics

def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (0 < q < 1), by bisection on
    the CDF (remembered: the same few are asked for again and again)."""
    return _t_quantile(q, df)


@functools.lru_cache(maxsize=4096)
def _t_quantile(q: float, df: float) -> float:
    if not 0 < q < 1:
        raise ValueError("q must be in (0, 1)")
    if q == 0.5:
        return 0.0
    upper = q > 0.5
    tail = 2 * (1 - q if upper else q)  # the two-sided p of the quantile
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > tail:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_two_sided_p(mid, df) > tail:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    value = (low + high) / 2
    return value if upper else -value


@dataclass(frozen=True)
class Paired:
    n: int  # pairs
    mean: float  # mean of B - A
    std: float  # standard deviation of the differences
    t: float
    df: int
    p: float  # two-sided, paired t-test
    low: float  # 95 % confidence interval of the mean difference
    high: float


def paired(a, b, confidence: float = 0.95) -> Paired | None:
    """The paired t-test of B - A, pair by pair (runs of the same pair were measured side by side);
    None with fewer than 2 pairs."""
    diffs = [float(y) - float(x) for x, y in zip(a, b)]
    n = len(diffs)
    if n < 2:
        return None
    s = summarize(diffs)
    if s.std == 0:
        p = 1.0 if s.mean == 0 else 0.0
        t = 0.0 if s.mean == 0 else math.copysign(math.inf, s.mean)
        return Paired(n, s.mean, 0.0, t, n - 1, p, s.mean, s.mean)
    error = s.std / math.sqrt(n)
    t = s.mean / error
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * error
    return Paired(n, s.mean, s.std, t, n - 1, t_two_sided_p(t, n - 1), s.mean - half, s.mean + half)


def signed_rank_p(diffs) -> float | None:
    """The two-sided p of the Wilcoxon signed-rank test of ``diffs`` (zeros dropped, ties given
    their mean rank): exact (every sign pattern counted) up to 25 non-zero differences without ties,
    else the normal approximation with the ties' correction. None when no difference is non-zero."""
    values = [float(d) for d in diffs if d != 0]
    n = len(values)
    if n == 0:
        return None
    order = sorted(range(n), key=lambda i: abs(values[i]))
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(values[order[j + 1]]) == abs(values[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    plus = sum(r for r, v in zip(ranks, values) if v > 0)
    total = n * (n + 1) / 2
    smaller = min(plus, total - plus)
    ties = any(r != int(r) for r in ranks) or len(set(abs(v) for v in values)) < n
    if n <= 25 and not ties:
        counts = [1] + [0] * int(total)  # counts[s]: sign patterns whose positive ranks sum to s
        for rank in range(1, n + 1):
            for s in range(int(total), rank - 1, -1):
                counts[s] += counts[s - rank]
        return min(1.0, 2 * sum(counts[: int(smaller) + 1]) / 2 ** n)
    groups: dict = {}
    for r in ranks:
        groups[r] = groups.get(r, 0) + 1
    variance = n * (n + 1) * (2 * n + 1) / 24 - sum(c ** 3 - c for c in groups.values()) / 48
    if variance <= 0:
        return 1.0
    z = (smaller - total / 2) / math.sqrt(variance)
    return min(1.0, math.erfc(-z / math.sqrt(2)))  # two-sided: 2 * Phi(z), z <= 0


def holm(pvalues: dict, alpha: float = 0.05) -> dict:
    """Holm–Bonferroni over ``pvalues`` ({name: p}): {name: rejected}. The family-wise error rate
    (any false alarm among them) stays at most ``alpha`` whatever their dependence."""
    ordered = sorted(pvalues, key=lambda name: pvalues[name])
    rejected, going = {}, True
    for i, name in enumerate(ordered):
        going = going and pvalues[name] <= alpha / (len(ordered) - i)
        rejected[name] = going
    return rejected


def detectable(error: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimum detectable effect: the smallest true difference a two-sided test at ``alpha``
    finds with probability ``power``, given the standard error of the difference and its degrees
    of freedom: (t(1 - alpha/2) + t(power)) * error."""
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * error


def pairs_needed(std: float, effect: float, alpha: float = 0.05, power: float = 0.8, most: int = 10_000) -> int | None:
    """How many pairs (differences of spread ``std``) it takes to detect ``effect`` with ``power``;
    None beyond ``most`` or for no effect."""
    if effect <= 0:
        return None
    if std == 0:
        return 2

    def enough(n):
        return detectable(std / math.sqrt(n), n - 1, alpha, power) <= effect

    if not enough(most):
        return None
    low, high = 1, most  # the detectable effect shrinks as n grows: enough(high), not enough(low)
    while high - low > 1:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high
