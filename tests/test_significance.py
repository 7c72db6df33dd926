"""Paired tests, Holm correction and bootstrap intervals on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.evaluation.significance import PairedResult, bootstrap_ci, holm, paired_test


@pytest.mark.parametrize("method", ["wilcoxon", "bootstrap"])
def test_identical_runs_are_not_different(method):
    a = np.random.default_rng(0).random(500)
    result = paired_test(a, a.copy(), method=method, n_boot=500)
    assert isinstance(result, PairedResult)
    assert result.p_value == 1.0
    assert result.mean_diff == 0.0 and result.ci_low == 0.0 and result.ci_high == 0.0
    assert holm({"x": result.p_value})["x"] == (1.0, False)


@pytest.mark.parametrize("method", ["wilcoxon", "bootstrap"])
def test_a_clear_shift_is_significant_and_its_interval_excludes_zero(method):
    rng = np.random.default_rng(1)
    b = rng.random(400)
    a = b + 0.05 + 0.01 * rng.standard_normal(400)
    result = paired_test(a, b, method=method, n_boot=1000)
    assert result.p_value < 0.01
    assert result.mean_diff == pytest.approx(0.05, abs=0.005)
    assert 0 < result.ci_low < result.mean_diff < result.ci_high


def test_no_shift_is_not_significant():
    rng = np.random.default_rng(2)
    a, b = rng.random(300), rng.random(300)
    for method in ("wilcoxon", "bootstrap"):
        result = paired_test(a, b, method=method, n_boot=1000)
        assert result.p_value > 0.05
        assert result.ci_low < 0 < result.ci_high


def test_wilcoxon_matches_the_exact_small_sample_value():
    # five positive differences: W = 0, exact two-sided p = 2 / 2**5
    result = paired_test(np.array([1.0, 2, 3, 4, 5]), np.zeros(5))
    assert result.statistic == 0.0
    assert result.p_value == pytest.approx(2 / 32)


def test_holm_adjusts_step_down_and_keeps_monotone_order():
    out = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    # sorted: a .01*3 = .03; c .03*2 = .06; b max(.06, .04*1) = .06
    assert out["a"] == (pytest.approx(0.03), True)
    assert out["c"] == (pytest.approx(0.06), False)
    assert out["b"] == (pytest.approx(0.06), False)
    assert list(out) == ["a", "b", "c"]
    out = holm({"a": 0.001, "b": 0.02, "nan": float("nan")})
    assert out["a"] == (pytest.approx(0.002), True) and out["b"] == (pytest.approx(0.02), True)
    assert math.isnan(out["nan"][0]) and out["nan"][1] is False


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    values = np.random.default_rng(3).random(1000)
    low, high = bootstrap_ci(values, n_boot=1000, seed=7)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(1000), rel=0.15)
    assert (low, high) == bootstrap_ci(values, n_boot=1000, seed=7)
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        paired_test(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="unknown method"):
        paired_test(np.zeros(3), np.zeros(3), method="t")
    with pytest.raises(ValueError, match="outside"):
        holm({"a": 1.5})


def test_p_values_below_the_float_range_never_print_as_zero() -> None:
    """DeLong's and Wilcoxon's p underflow to 0.0 on large samples; tables say "< 1e-300"."""
    from benchmark.reporting.significance import format_p

    assert format_p(0.0) == "< 1e-300"
    assert format_p(1e-320) == "< 1e-300"
    assert format_p(0.0123) == "0.012"
