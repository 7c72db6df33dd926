"""AUC, logloss and DeLong's paired test for two models' scores on the same labelled examples."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

_EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), via midranks."""
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps] (FuxiCTR's logloss)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class DeLongResult(NamedTuple):
    auc_a: float
    auc_b: float
    z: float
    p_value: float  # two-sided


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """DeLong's structural components V10 (per positive), V01 (per negative), via midranks (Sun & Xu 2014)."""
    m, n = len(pos), len(neg)
    both = stats.rankdata(np.r_[pos, neg])
    rp, rn = stats.rankdata(pos), stats.rankdata(neg)
    v10 = (both[:m] - rp) / n
    v01 = 1.0 - (both[m:] - rn) / m
    return v10, v01, float(v10.mean())


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988): are two correlated AUCs on the same examples equal?"""
    y = np.asarray(labels) > 0.5
    a, b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    if not (len(y) == len(a) == len(b)):
        raise ValueError("DeLong: labels and both score vectors must have one entry per example")
    v10a, v01a, auc_a = _placements(a[y], a[~y])
    v10b, v01b, auc_b = _placements(b[y], b[~y])
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(v10a) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(v01a)
    diff = auc_a - auc_b
    if var <= 0:
        return DeLongResult(auc_a, auc_b, 0.0 if diff == 0 else math.copysign(math.inf, diff), 1.0 if diff == 0 else 0.0)
    z = diff / math.sqrt(var)
    return DeLongResult(auc_a, auc_b, float(z), float(2 * stats.norm.sf(abs(z))))


def auc_se(labels: np.ndarray, scores: np.ndarray) -> float:
    """DeLong's standard error of one AUC: the per-model variance :func:`delong_test` pairs (nan if too few)."""
    y = np.asarray(labels) > 0.5
    s = np.asarray(scores, np.float64)
    if y.sum() < 2 or (~y).sum() < 2:
        return float("nan")
    v10, v01, _ = _placements(s[y], s[~y])
    return float(math.sqrt(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01)))
