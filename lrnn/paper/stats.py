"""The paper's statistics: Welch's t-test, t-based 95% intervals, Holm's correction, non-inferiority.

Student's t distribution is computed here from the regularized incomplete beta function (a continued fraction,
``math.lgamma``) rather than taken from scipy: it is the only piece of scipy the paper needs, and torch has no
``betainc``. Accuracy ~1e-12 (tests/paper/test_stats.py checks it against tabulated values).

Conventions used by every verdict:
- a difference ``a - b`` is *clear* when its two-sided 95% Welch interval excludes 0 (|t| > t_0.975 at the
  Welch–Satterthwaite degrees of freedom: 2.78 at 4 df, where a z-test would take 1.96);
- perplexities are compared on the log scale (``log a - log b`` = log of the ratio), and reported as ratios;
- "as good as" (non-inferiority) with a margin m: the upper end of the 95% interval of ``log a - log b`` lies below
  ``log(1 + m)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # every interval in the paper


# ---- Student's t ---------------------------------------------------------------------------------------------
def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x={x} outside [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use the symmetry on the other
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T <= t)."""
    return 1.0 - t_sf(t, df)


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on the CDF; t_ppf(0.975, 4) = 2.776)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q} outside (0, 1)")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ---- samples ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (ddof 1) and size of one group of seeds."""

    mean: float
    std: float
    n: int

    def ci(self, level: float = LEVEL) -> tuple[float, float]:
        """t-based interval of the mean (NaN with fewer than 2 values)."""
        if self.n < 2:
            return (math.nan, math.nan)
        h = t_ppf(0.5 + level / 2, self.n - 1) * self.std / math.sqrt(self.n)
        return (self.mean - h, self.mean + h)

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{self.mean:.3g} (n=1)"
        lo, hi = self.ci()
        return f"{self.mean:.3g} [{lo:.3g}, {hi:.3g}] (n={self.n})"


def stat(values: Iterable[float]) -> Stat:
    """``Stat`` of the finite values (NaN and inf dropped)."""
    v = np.asarray([x for x in values if x == x and not math.isinf(x)], dtype=float)
    if len(v) == 0:
        return Stat(math.nan, math.nan, 0)
    return Stat(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v))


def _as_stat(x: Stat | Iterable[float]) -> Stat:
    return x if isinstance(x, Stat) else stat(x)


@dataclass(frozen=True)
class Welch:
    """Welch's comparison of two means: ``diff`` = mean(a) - mean(b), its standard error, the Welch–Satterthwaite
    degrees of freedom, t, the two-sided p-value and the 95% interval of the difference."""

    diff: float
    se: float
    df: float
    t: float
    p: float
    low: float
    high: float
    na: int
    nb: int

    @property
    def n(self) -> str:
        return f"{self.na}+{self.nb}"


def welch(a: Stat | Iterable[float], b: Stat | Iterable[float], level: float = LEVEL) -> Welch:
    """Welch's t-test of mean(a) = mean(b). Needs >= 2 values per side (else every number is NaN).

    With both variances 0 the difference is exact: p = 0 (or 1 if the means are equal), a zero-width interval."""
    sa, sb = _as_stat(a), _as_stat(b)
    nan = math.nan
    if sa.n < 2 or sb.n < 2:
        return Welch(sa.mean - sb.mean if sa.n and sb.n else nan, nan, nan, nan, nan, nan, nan, sa.n, sb.n)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    diff, se = sa.mean - sb.mean, math.sqrt(va + vb)
    if se == 0:
        return Welch(diff, 0.0, math.inf, math.copysign(math.inf, diff) if diff else 0.0, float(diff == 0), diff,
                     diff, sa.n, sb.n)  # fmt: skip
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    t = diff / se
    h = t_ppf(0.5 + level / 2, df) * se
    return Welch(diff, se, df, t, min(1.0, 2.0 * t_sf(abs(t), df)), diff - h, diff + h, sa.n, sb.n)


def linear(terms: Sequence[tuple[float, Stat | Iterable[float]]], level: float = LEVEL) -> Welch:
    """Welch's interval for a signed sum of independent means, sum_i c_i mean(x_i) (e.g. a log seconds ratio =
    a log tokens ratio + a log seconds-per-token ratio): se^2 = sum c_i^2 s_i^2 / n_i, Welch–Satterthwaite df
    over the terms. ``na``/``nb``: the sizes of the first two terms. Needs >= 2 values in every term."""
    stats = [(c, _as_stat(x)) for c, x in terms]
    nan = math.nan
    diff = sum(c * st.mean for c, st in stats) if all(st.n for _, st in stats) else nan
    na, nb = (stats[0][1].n, stats[1][1].n) if len(stats) > 1 else (stats[0][1].n, 0)
    if any(st.n < 2 for _, st in stats):
        return Welch(diff, nan, nan, nan, nan, nan, nan, na, nb)
    parts = [(c * c * st.std**2 / st.n, st.n) for c, st in stats]
    var = sum(v for v, _ in parts)
    if var == 0:
        return Welch(diff, 0.0, math.inf, math.copysign(math.inf, diff) if diff else 0.0, float(diff == 0), diff,
                     diff, na, nb)  # fmt: skip
    df = var**2 / sum(v * v / (n - 1) for v, n in parts if v > 0)
    se = math.sqrt(var)
    t = diff / se
    h = t_ppf(0.5 + level / 2, df) * se
    return Welch(diff, se, df, t, min(1.0, 2.0 * t_sf(abs(t), df)), diff - h, diff + h, na, nb)


def mean_ci(values: Iterable[float], level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean, low, high, n) with the t-based interval of the mean."""
    s = stat(values)
    return (s.mean, *s.ci(level), s.n)


def log_ratio(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> Welch:
    """Welch on log(a) - log(b) (perplexities, times): exp(diff) is the ratio of geometric means, exp(low/high)
    its interval."""
    return welch([math.log(x) for x in a if x > 0], [math.log(x) for x in b if x > 0], level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error): the i-th smallest p times (m - i), made monotone.
    NaN p-values are kept NaN and do not count in m."""
    idx = [i for i, p in enumerate(pvalues) if p == p]
    m, out, running = len(idx), [math.nan] * len(pvalues), 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def noninferior(a: Iterable[float], b: Iterable[float], margin: float, level: float = LEVEL) -> bool | None:
    """Non-inferiority ("a is as good as b") of lower-is-better positive quantities (perplexities): the upper end
    of the ``level`` interval of log(a) - log(b) is below log(1 + margin). ``None`` when either side has < 2
    values."""
    w = log_ratio(a, b, level)
    return None if w.high != w.high else w.high < math.log1p(margin)
