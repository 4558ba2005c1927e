"""The paper's statistics against tabulated values (reference numbers from scipy 1.17 / t tables / Wikipedia)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrnn.paper import stats as S


@pytest.mark.parametrize(
    ("q", "df", "expected"),
    [(0.975, 4, 2.776445), (0.975, 2, 4.302653), (0.975, 10, 2.228139), (0.975, 30, 2.042272), (0.95, 1, 6.313752),
     (0.995, 3.5, 5.085702), (0.5, 7, 0.0), (0.025, 4, -2.776445)],
)  # fmt: skip
def test_t_quantiles(q: float, df: float, expected: float) -> None:
    assert S.t_ppf(q, df) == pytest.approx(expected, abs=2e-6)


def test_t_cdf_known_values() -> None:
    assert S.t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)  # Cauchy
    assert S.t_cdf(0.0, 3.3) == pytest.approx(0.5, abs=1e-12)
    assert S.t_sf(2.0, 5) == pytest.approx(0.050969739, abs=1e-9)
    assert S.t_cdf(-2.0, 5) == pytest.approx(S.t_sf(2.0, 5), abs=1e-12)
    assert S.t_sf(1.959964, math.inf) == pytest.approx(0.025, abs=1e-6)
    assert S.betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - sum_{k<2} C(4,k) .4^k .6^(4-k)


def test_welch_textbook_example() -> None:
    """Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 25.0, p = 0.021."""
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    w = S.welch(a, b)
    assert w.t == pytest.approx(-2.455356, abs=1e-6)
    assert w.df == pytest.approx(24.988529, abs=1e-6)
    assert w.p == pytest.approx(0.021378, abs=1e-6)
    assert (w.low, w.high) == pytest.approx((-3.984096, -0.349237), abs=1e-6)
    assert w.n == "15+15"


def test_welch_small_unequal_samples() -> None:
    w = S.welch([1.0, 2.0, 3.5], [4.0, 4.1, 6.0, 5.5])
    assert (w.t, w.df, w.p) == pytest.approx((-3.095993, 3.787930, 0.039124), abs=1e-6)
    assert (w.low, w.high) == pytest.approx((-5.239632, -0.227034), abs=1e-6)


def test_welch_degenerate_cases() -> None:
    assert math.isnan(S.welch([1.0], [2.0, 3.0]).p)
    exact = S.welch([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])  # no spread: the difference is exact
    assert exact.p == 0.0 and exact.low == exact.high == 1.0
    assert S.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0


def test_mean_interval() -> None:
    mean, lo, hi, n = S.mean_ci([1.0, 2.0, 3.0])  # mean 2, s = 1, t(0.975, 2) = 4.3027
    assert (mean, n) == (2.0, 3)
    assert (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-6)
    assert str(S.stat([1.0, 2.0, 3.0])) == "2 [-0.484, 4.48] (n=3)"
    assert str(S.stat([])) == "n/a"


def test_holm() -> None:
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.5, math.nan, 0.01]) == pytest.approx([0.5, math.nan, 0.02], nan_ok=True)
    assert S.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert S.holm([0.04, 0.02, 0.3]) == pytest.approx([0.08, 0.06, 0.3])  # step-down, monotone


def test_noninferiority_margin() -> None:
    base = [100.0, 101.0, 99.0, 100.5]
    assert S.noninferior([100.2, 100.8, 99.5, 100.1], base, margin=0.02) is True
    assert S.noninferior([104.0, 105.0, 103.0, 104.5], base, margin=0.02) is False  # 4% worse
    assert S.noninferior([90.0, 110.0, 100.0, 105.0], base, margin=0.02) is False  # too noisy to tell
    assert S.noninferior([100.0], base, margin=0.02) is None
    ratio = S.log_ratio([110.0, 111.0, 109.0], [100.0, 101.0, 99.0])
    assert math.exp(ratio.diff) == pytest.approx(1.1, abs=1e-3)


def test_linear_combination_matches_welch_for_two_terms_and_adds_variances() -> None:
    from lrnn.paper.stats import linear

    a, b = [1.0, 1.4, 1.2, 1.9], [0.5, 0.7, 0.2]
    w, lw = S.welch(a, b), linear([(1.0, a), (-1.0, b)])
    assert (lw.diff, lw.se, lw.df, lw.low, lw.high) == pytest.approx((w.diff, w.se, w.df, w.low, w.high))
    c, d = [3.0, 3.3, 2.9], [1.0, 1.1, 1.05]
    four = linear([(1.0, a), (-1.0, b), (-1.0, c), (1.0, d)])
    assert four.diff == pytest.approx(np.mean(a) - np.mean(b) - np.mean(c) + np.mean(d))
    assert four.se == pytest.approx(math.sqrt(sum(np.var(x, ddof=1) / len(x) for x in (a, b, c, d))))
    assert four.high - four.low > w.high - w.low  # more terms, a wider interval
    assert math.isnan(linear([(1.0, a), (-1.0, [1.0])]).low)  # a term with one value: no interval
