"""DeLong's paired AUC test pinned against an independent textbook implementation.

``delong_test`` computes the structural components through midranks (Sun & Xu 2014). The reference
below is DeLong, DeLong & Clarke-Pearson (1988) written out literally: psi over every
(positive, negative) pair, V10/V01 placement values, the S10/S01 covariance matrices, and
var(AUC_A - AUC_B) = L (S10/m + S01/n) L' with L = (1, -1). The p-value comes from math.erfc, not scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.tasks.ranking.metrics import delong_test


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _cov(u: list[float], v: list[float]) -> float:
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    return sum((p - mu) * (q - mv) for p, q in zip(u, v, strict=True)) / (len(u) - 1)


def reference_delong(labels, scores_a, scores_b) -> dict[str, float]:
    """DeLong et al. (1988), section 2, with O(m n) loops over all pairs."""
    comps = []
    for scores in (scores_a, scores_b):
        pos = [float(s) for s, y in zip(scores, labels, strict=True) if y == 1]
        neg = [float(s) for s, y in zip(scores, labels, strict=True) if y == 0]
        v10 = [sum(_psi(x, y) for y in neg) / len(neg) for x in pos]  # one per positive
        v01 = [sum(_psi(x, y) for x in pos) / len(pos) for y in neg]  # one per negative
        comps.append((v10, v01, sum(v10) / len(pos)))
    (a10, a01, auc_a), (b10, b01, auc_b) = comps
    m, n = len(a10), len(a01)
    s10 = [[_cov(a10, a10), _cov(a10, b10)], [_cov(b10, a10), _cov(b10, b10)]]
    s01 = [[_cov(a01, a01), _cov(a01, b01)], [_cov(b01, a01), _cov(b01, b01)]]
    s = [[s10[i][j] / m + s01[i][j] / n for j in range(2)] for i in range(2)]
    var = s[0][0] + s[1][1] - s[0][1] - s[1][0]  # L S L' with L = (1, -1)
    z = (auc_a - auc_b) / math.sqrt(var)
    return {"auc_a": auc_a, "auc_b": auc_b, "var": var, "cov": s[0][1], "z": z,
            "p": math.erfc(abs(z) / math.sqrt(2))}


# 6 positives, 7 negatives; ties inside each class and across the classes, in both score vectors
Y = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
A = [0.9, 0.8, 0.7, 0.7, 0.4, 0.3, 0.7, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1]
B = [0.8, 0.6, 0.7, 0.5, 0.4, 0.2, 0.6, 0.6, 0.3, 0.4, 0.2, 0.1, 0.2]


def _assert_matches(res, ref) -> None:
    assert res.auc_a == pytest.approx(ref["auc_a"], abs=1e-12)
    assert res.auc_b == pytest.approx(ref["auc_b"], abs=1e-12)
    assert res.z == pytest.approx(ref["z"], rel=1e-10)
    var = ((res.auc_a - res.auc_b) / res.z) ** 2  # the variance delong_test used
    assert var == pytest.approx(ref["var"], rel=1e-10)
    assert res.p_value == pytest.approx(ref["p"], rel=1e-9)


def test_delong_matches_the_textbook_estimator_on_tied_paired_scores() -> None:
    ref = reference_delong(Y, A, B)
    # by hand over the 6 x 7 = 42 pairs: A wins 35 (ties as 1/2), B wins 31.5
    assert ref["auc_a"] == pytest.approx(35 / 42) and ref["auc_b"] == pytest.approx(31.5 / 42)
    assert ref["cov"] > 0  # correlated (paired) scores: the covariance term matters
    assert 0.01 < ref["p"] < 0.5  # a moderate p, where a wrong variance shows
    res = delong_test(np.array(Y), np.array(A), np.array(B))
    _assert_matches(res, ref)
    # the reference's own values, written down (6 decimals): var 0.004176, z 1.289533, p 0.197213
    assert ref["var"] == pytest.approx(0.004176115, abs=1e-9)
    assert res.z == pytest.approx(1.289533, abs=1e-6) and res.p_value == pytest.approx(0.197213, abs=1e-6)
    # swapping the two models flips z and keeps p
    swapped = delong_test(np.array(Y), np.array(B), np.array(A))
    assert swapped.z == pytest.approx(-res.z, rel=1e-12) and swapped.p_value == pytest.approx(res.p_value, rel=1e-12)


def test_delong_matches_the_textbook_estimator_on_random_correlated_scores() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(80) < 0.4).astype(int)
    shared = rng.normal(size=80)  # what the two models agree on
    a = np.round(0.6 * y + shared + 0.5 * rng.normal(size=80), 1)  # rounding makes ties
    b = np.round(0.4 * y + shared + 0.5 * rng.normal(size=80), 1)
    ref = reference_delong(y.tolist(), a.tolist(), b.tolist())
    assert ref["cov"] > 0 and 0.01 < ref["p"] < 0.5
    _assert_matches(delong_test(y, a, b), ref)
    # boolean labels give the same answer
    _assert_matches(delong_test(y.astype(bool), a, b), ref)
