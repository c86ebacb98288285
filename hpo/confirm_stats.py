"""The statistics of a seed confirmation: per-configuration summaries and Welch's t-test. Pure.

A configuration re-run with n fresh seeds gives n values of a metric; :func:`summarize` returns their
mean, sample standard deviation (n - 1) and the 95% Student-t interval of the mean. :func:`welch`
compares two configurations without assuming equal variances (Welch 1947), two-sided.
scipy is imported only when a statistic is computed: readers of stored results never need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

LEVEL = 0.95  # the interval's coverage
ALPHA = 0.05  # the test's significance level (the same 5%)


@dataclass(frozen=True)
class Summary:
    """n values of one metric: mean, std (ddof=1), the 95% t-interval of the mean (None below 2 values)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "values": list(self.values)}


@dataclass(frozen=True)
class WelchTest:
    """Welch's unequal-variance t-test of two samples, two-sided."""

    t: float | None
    df: float | None
    p_value: float
    distinguishable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary | None:
    """Mean, std and 95% t-interval of ``values`` (finite ones); None when there is none."""
    xs = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not xs:
        return None
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return Summary(n, mean, None, None, None, xs)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, xs)


def welch(a: Sequence[float], b: Sequence[float]) -> WelchTest | None:
    """Welch's t-test of ``a`` against ``b`` (two-sided); None when either has fewer than 2 values.

    Both samples constant: no variance to test against, so p = 1 when the means are equal and 0 when
    they differ (a difference every seed reproduces exactly).
    """
    sa, sb = summarize(a), summarize(b)
    if sa is None or sb is None or sa.std is None or sb.std is None:
        return None
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    if va + vb == 0.0:
        p = 1.0 if sa.mean == sb.mean else 0.0
        return WelchTest(None, None, p, p < ALPHA)
    t = (sa.mean - sb.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va**2 / (sa.n - 1) if va else 0.0) + (vb**2 / (sb.n - 1) if vb else 0.0))
    from scipy import stats

    p = float(2.0 * stats.t.sf(abs(t), df))
    return WelchTest(t, df, p, p < ALPHA)


def verdict(test: WelchTest | None, winner: str, runner_up: str) -> str:
    """The plain sentence the outputs show about the winner and the runner-up."""
    if test is None:
        return f"{winner} vs {runner_up}: not tested (each needs 2 or more seeds)"
    word = "distinguishable" if test.distinguishable else "not distinguishable"
    return f"{winner} vs {runner_up}: {word} at 5% (Welch's t-test, {format_p(test.p_value)})"


def format_p(p: float) -> str:
    """A p-value as text: ``p = 0.0123`` (3 significant digits), ``p < 0.001`` below that."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"
