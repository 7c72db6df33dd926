"""The matching report's paired tests, pinned by values: which method is the anchor, which
per-case values are paired, and the p / Holm p each row prints.

Stored records and per-case ranks of three methods are written the way the runner stores them;
the expected numbers are computed here with scipy.stats.wilcoxon and a hand Holm step-down.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import benchmark.reporting.significance as sig
from benchmark.reporting.results import aggregate, load_records
from benchmark.store.records import RunRecord

SUITE = "wiring-suite"

# Per-case ranks of the target (14 test cases). beta is the best by mean NDCG@10 and has two
# seeds (its per-case value is the mean of the two); alpha is the worst and sorts first.
RANKS = {
    ("alpha", 0): [6, 11, 5, 13, 1, 15, 1, 13, 1, 7, 5, 15, 10, 15],
    ("beta", 0): [1, 1, 2, 1, 3, 1, 2, 1, 4, 1, 2, 1, 1, 3],
    ("beta", 1): [1, 2, 1, 1, 2, 1, 3, 1, 2, 2, 1, 1, 1, 2],
    ("gamma", 0): [3, 4, 5, 1, 7, 3, 2, 1, 4, 6, 3, 6, 2, 1],
}
DISPLAY = {"alpha": "Alpha", "beta": "Beta", "gamma": "Gamma"}


def _ndcg10(ranks) -> np.ndarray:
    r = np.asarray(ranks, dtype=np.float64)
    return np.array([1 / np.log2(x + 1) if x <= 10 else 0.0 for x in r])


def _store(results: Path, method: str, seed: int, ranks: list[int] | None, file: str = "ranks.npy",
           status: str = "done", **extra) -> None:
    record = RunRecord(run_key=f"{method}-{seed}", suite=SUITE, method=method, display=DISPLAY.get(method, method),
                       paper_column=None, seed=seed, scale="tiny", status=status, manifest_hash="m" * 64,
                       dataset={"name": "xmarket-sim", "synthetic": True, "label": "x"}, **extra)
    folder = results / SUITE / record.run_key
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(asdict(record)))
    if ranks is not None:
        np.save(folder / file, np.asarray(ranks, dtype=np.int32))


def _hand_holm(p: dict[str, float]) -> dict[str, float]:
    """Holm (1979): the i-th smallest of m p-values -> max over j <= i of min(1, (m - j + 1) p_(j))."""
    names = sorted(p, key=p.get)
    out, running = {}, 0.0
    for i, name in enumerate(names):  # i = j - 1
        running = max(running, min(1.0, (len(names) - i) * p[name]))
        out[name] = running
    return out


def _rows(lines: list[str]) -> dict[str, list[str]]:
    """Table rows by their first cell: [mean diff, CI, p, Holm p, significant]."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return {c[0]: c[1:] for c in cells if c[0] != "vs"}


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    for (method, seed), ranks in RANKS.items():
        _store(tmp_path, method, seed, ranks)
    _store(tmp_path, "delta", 0, None, status="skipped", reason="no text")  # no ranks: not in the tests
    return tmp_path


def test_the_best_method_is_the_anchor_and_the_rows_carry_its_wilcoxon_and_holm_values(stored, monkeypatch):
    calls = []

    def spy(a, b, **kw):
        result = real(a, b, **kw)
        calls.append((np.array(a), np.array(b), result))
        return result

    real = sig.paired_test
    monkeypatch.setattr(sig, "paired_test", spy)
    results = aggregate(load_records(stored, SUITE))
    lines = sig.significance_lines(results, stored)

    per = {"Alpha": _ndcg10(RANKS[("alpha", 0)]), "Gamma": _ndcg10(RANKS[("gamma", 0)]),
           "Beta": (_ndcg10(RANKS[("beta", 0)]) + _ndcg10(RANKS[("beta", 1)])) / 2}
    assert max(per, key=lambda k: per[k].mean()) == "Beta" and per["Alpha"].mean() < per["Gamma"].mean()
    p = {name: stats.wilcoxon(per["Beta"] - per[name]).pvalue for name in ("Alpha", "Gamma")}
    adjusted = _hand_holm(p)
    # the fixture's numbers: Holm's step-down maximum binds (Gamma's adjusted p is Alpha's 2 p)
    assert p["Alpha"] == pytest.approx(0.010772427, rel=1e-6) and p["Gamma"] == pytest.approx(0.018557662, rel=1e-6)
    assert adjusted["Alpha"] == adjusted["Gamma"] == pytest.approx(2 * p["Alpha"])

    # the anchor is the best method, first in every pair, paired case by case
    assert lines[0].startswith("Paired Wilcoxon") and "Beta against each other method" in lines[0]
    assert len(calls) == 2
    for a, b, result in calls:
        assert np.allclose(a, per["Beta"], rtol=0, atol=1e-15)
        other = next(name for name in ("Alpha", "Gamma") if np.allclose(b, per[name], rtol=0, atol=1e-15))
        assert result.p_value == pytest.approx(p[other], rel=1e-12)
        assert result.mean_diff == pytest.approx(float(np.mean(per["Beta"] - per[other])), rel=1e-12)

    rows = _rows(lines)
    assert set(rows) == {"Alpha", "Gamma"}
    for name, (diff, ci, p_cell, holm_cell, significant) in rows.items():
        assert diff == f"{100 * np.mean(per['Beta'] - per[name]):+.3f}" and diff.startswith("+")
        low, high = (float(x) for x in ci.strip("[]").split(","))
        assert low <= float(diff) <= high
        assert p_cell == f"{p[name]:.2g}"
        assert holm_cell == f"{adjusted[name]:.2g}"
        assert significant == ("yes" if adjusted[name] <= 0.05 else "no")
    assert rows["Alpha"][2:] == ["0.011", "0.022", "yes"] and rows["Gamma"][2:] == ["0.019", "0.022", "yes"]


def test_competence_is_each_method_minus_the_reference_on_next_item_hr10(tmp_path: Path):
    hits = {  # next-item ranks; HR@10 is 1 for rank <= 10
        "popularity": [30, 2, 40, 50, 9, 60, 70, 80, 5, 90, 10, 12],
        "sasrec": [1, 2, 3, 50, 4, 60, 5, 6, 7, 90, 8, 9],
        "beta": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 50, 60],
        "random": [99] * 12,
    }
    for method, ranks in hits.items():
        _store(tmp_path, method, 0, ranks, file="next_item_ranks.npy")
    results = aggregate(load_records(tmp_path, SUITE))
    lines = sig.competence_lines(results, tmp_path)

    hr = {m: (np.asarray(r) <= 10).astype(float) for m, r in hits.items()}
    sections = "\n".join(lines).split("Competence on the next-item protocol")[1:]
    assert len(sections) == 2 and "minus popularity's" in sections[0] and "minus sasrec's" in sections[1]
    expected = {0: ("popularity", ["sasrec", "Beta"]), 1: ("sasrec", ["Beta"])}  # random and popularity never tested
    for i, (ref, names) in expected.items():
        rows = _rows(sections[i].splitlines())
        assert sorted(rows) == sorted(names)
        diffs = {n: hr["beta" if n == "Beta" else n] - hr[ref] for n in names}
        p = {n: stats.wilcoxon(d).pvalue for n, d in diffs.items()}
        adjusted = _hand_holm(p)
        for name in names:
            assert rows[name][0] == f"{100 * diffs[name].mean():+.3f}"
            assert rows[name][2] == f"{p[name]:.2g}" and rows[name][3] == f"{adjusted[name]:.2g}"
    # Beta hits 10 of 12, popularity 4 of 12: +50 points, in Beta's favour
    assert _rows(sections[0].splitlines())["Beta"][0] == "+50.000"
