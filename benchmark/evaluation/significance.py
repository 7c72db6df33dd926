"""Paired significance across test cases.

Two runs on the same split manifest score the same cases, so per-case values (e.g. NDCG@10 from
metrics.py) pair up: the Wilcoxon signed-rank test or a paired bootstrap on their differences,
Holm's step-down correction when one method is compared with several baselines, and percentile
bootstrap confidence intervals. Per-case results are kept for exactly this (RecBole #1247 threw
them away, so no paired test was possible). Strategies are plain functions, as Elliot's
``elliot/evaluation/statistical_significance.py`` keeps them small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = ["PairedResult", "bootstrap_ci", "bootstrap_ci_hits", "holm", "paired_test"]

_CHUNK = 4_000_000  # bootstrap indices drawn at once (resamples x cases)


class PairedResult(NamedTuple):
    """Outcome of a paired test of ``a`` against ``b``; ``mean_diff`` = mean(a - b).

    ``ci_low``/``ci_high`` is the paired-bootstrap percentile interval of mean(a - b) at 95%.
    ``statistic`` is Wilcoxon's W (the smaller signed-rank sum) or, for the bootstrap, mean(a - b).
    """

    statistic: float
    p_value: float
    mean_diff: float
    ci_low: float
    ci_high: float


def _values(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D per-case values")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement; memory bounded by chunking."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    n = len(values)
    per_chunk = max(1, _CHUNK // max(n, 1))
    means = np.empty(n_boot, dtype=np.float64)
    for s in range(0, n_boot, per_chunk):
        k = min(per_chunk, n_boot - s)
        means[s : s + k] = values[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return means


def _percentile_interval(means: np.ndarray, alpha: float) -> tuple[float, float]:
    """The (1 - alpha) percentile interval of bootstrap means: both bootstrap CIs share this one rule."""
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of the mean of ``values`` (Efron & Tibshirani 13.3)."""
    values = _values(values, "values")
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    if len(values) == 0:
        return float("nan"), float("nan")
    means = _bootstrap_means(values, n_boot, seed)
    return _percentile_interval(means, alpha)


def bootstrap_ci_hits(hits: int, n: int, n_boot: int = 2000, alpha: float = 0.05,
                      seed: int = 0) -> tuple[float, float]:
    """:func:`bootstrap_ci` of a hit rate (per-case values 0/1) from its counts alone.

    Resampling ``n`` cases with replacement from ``hits`` ones and ``n - hits`` zeros draws
    Binomial(n, hits / n) ones, so the bootstrap distribution of the mean depends on the counts only:
    drawing it that way gives the interval :func:`bootstrap_ci` gives on the per-case values, in
    O(n_boot) instead of O(n_boot * n) (reports read the counts of every test group from the
    stored group metrics, not the per-case values).
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0 <= hits <= n:
        raise ValueError(f"hits must lie in [0, n]: {hits} of {n}")
    if n == 0:
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).binomial(n, hits / n, size=n_boot) / n
    return _percentile_interval(means, alpha)


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    method: str = "wilcoxon",
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedResult:
    """Two-sided paired test of per-case values ``a`` vs ``b`` (same cases, same order).

    ``method='wilcoxon'``: signed-rank test on a - b, zero differences dropped (Wilcoxon's
    convention; both runs missing a case says nothing about which is better).
    ``method='bootstrap'``: paired bootstrap of mean(a - b) under the null, shifted to mean 0;
    p = (1 + #{|resampled mean| >= |observed mean|}) / (1 + n_boot).
    Identical inputs give p = 1.
    """
    a = _values(a, "a")
    b = _values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
    if len(a) == 0:
        raise ValueError("no cases to compare")
    diff = a - b
    mean_diff = float(diff.mean())
    ci_low, ci_high = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    if method == "wilcoxon":
        if not diff.any():
            return PairedResult(0.0, 1.0, mean_diff, ci_low, ci_high)
        res = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        return PairedResult(float(res.statistic), float(res.pvalue), mean_diff, ci_low, ci_high)
    if method == "bootstrap":
        null_means = _bootstrap_means(diff - mean_diff, n_boot, seed + 1)
        extreme = np.count_nonzero(np.abs(null_means) >= abs(mean_diff) - 1e-15 * (1 + abs(mean_diff)))
        p = (1 + extreme) / (1 + n_boot)
        return PairedResult(mean_diff, float(p), mean_diff, ci_low, ci_high)
    raise ValueError(f"unknown method {method!r}; use 'wilcoxon' or 'bootstrap'")


def holm(p_values: Mapping[str, float], alpha: float = 0.05) -> dict[str, tuple[float, bool]]:
    """Holm-Bonferroni step-down: ``{name: (adjusted p, significant at alpha)}``.

    Adjusted p of the i-th smallest of m p-values is max_{j<=i} min(1, (m - j + 1) p_(j))
    (Holm 1979); it is significant iff adjusted p <= alpha, which controls the family-wise
    error rate. NaN p-values (a test that could not run) stay NaN, are never significant and
    do not count towards m.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    valid = {k: float(p) for k, p in p_values.items() if not math.isnan(float(p))}
    for name, p in valid.items():
        if not 0 <= p <= 1:
            raise ValueError(f"p-value of {name!r} is {p}, outside [0, 1]")
    order = sorted(valid, key=lambda k: (valid[k], k))
    m = len(order)
    out: dict[str, tuple[float, bool]] = {}
    running = 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (m - i) * valid[name]))
        out[name] = (running, running <= alpha)
    return {k: out.get(k, (float("nan"), False)) for k in p_values}
