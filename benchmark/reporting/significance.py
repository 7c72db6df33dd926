"""Paired significance of the best method against every other, from the stored per-case ranks.

All runs of a suite share one split manifest, so their per-case NDCG@10 values pair up: a
Wilcoxon signed-rank test per comparison, Holm-corrected across the comparisons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.evaluation.metrics import HR, NDCG, RankMetric
from benchmark.evaluation.significance import holm, paired_test
from benchmark.fsutil import load_result_array
from benchmark.reporting.results import MethodResult

METRIC = NDCG(10)


#: Per-case rank files of the two protocols, as the runner stores them.
RANK_FILES = {"item-to-item": "ranks.npy", "next-item": "next_item_ranks.npy"}


def per_case(result: MethodResult, results_dir: Path, protocol: str = "item-to-item",
             metric: RankMetric = METRIC) -> np.ndarray | None:
    """Per-case metric values, averaged over the method's seeds (None when no ranks are stored)."""
    values = []
    for record in result.records:
        path = results_dir / record.suite / record.run_key / RANK_FILES[protocol]
        if record.status == "done" and path.exists():
            values.append(metric(load_result_array(path)))
    return np.mean(values, axis=0) if values else None


def format_p(p: float) -> str:
    """A p-value for a table: below the float range (or exactly 0 from an underflow) is "< 1e-300"."""
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def paired_table(tests: dict, lines: list[str]) -> list[str]:
    """``lines`` plus one row per paired test (mean diff, 95% CI, p, Holm p over ``tests``)."""
    adjusted = holm({name: t.p_value for name, t in tests.items()})
    lines += ["| vs | mean diff (pp) | 95% CI | p | Holm p | significant (0.05) |", "|---|---|---|---|---|---|"]
    for name, t in tests.items():
        p_holm, significant = adjusted[name]
        lines.append(f"| {name} | {100 * t.mean_diff:+.3f} | [{100 * t.ci_low:+.3f}, {100 * t.ci_high:+.3f}] | "
                     f"{format_p(t.p_value)} | {format_p(p_holm)} | {'yes' if significant else 'no'} |")
    return lines


def significance_lines(results: list[MethodResult], results_dir: Path, protocol: str = "item-to-item") -> list[str]:
    """Markdown lines: best method (by mean NDCG@10 over all cases) vs each other, Holm-corrected."""
    per = {m.display: v for m in results if (v := per_case(m, results_dir, protocol)) is not None}
    if len(per) < 2:
        return []
    best = max(per, key=lambda name: per[name].mean())
    tests = {name: paired_test(per[best], values) for name, values in per.items() if name != best}
    lines = [f"Paired Wilcoxon signed-rank tests on per-case {METRIC.key} ({protocol}, all test cases), "
             f"{best} against each other method, Holm-corrected:", ""]
    return paired_table(tests, lines)


def competence_lines(results: list[MethodResult], results_dir: Path,
                     references: tuple[str, ...] = ("popularity", "sasrec")) -> list[str]:
    """Next-item HR@10 of every sequence method against the references (Popularity, SASRec), paired.

    "Competent before compared": a method that loses at item-to-item matching must first show it
    works on its own task; this table is that check, per case, Holm-corrected per reference.
    """
    hr10 = HR(10)
    per = {m.method: (m, v) for m in results if (v := per_case(m, results_dir, "next-item", hr10)) is not None}
    lines: list[str] = []
    for ref in references:
        if ref not in per:
            continue
        ref_result, ref_values = per[ref]
        tests = {m.display: paired_test(values, ref_values) for name, (m, values) in per.items()
                 if name not in ("random", "popularity", ref)}
        if not tests:
            continue
        lines += ["", f"Competence on the next-item protocol: per-case HR@10 of each method minus "
                  f"{ref_result.display}'s (positive = better), paired Wilcoxon, Holm-corrected:", ""]
        paired_table(tests, lines)
    return lines


#: Each protocol's headline metric for the floor check (Table 1: HR@50; the next-item table: HR@10).
FLOOR_METRIC: dict[str, RankMetric] = {"item-to-item": HR(50), "next-item": HR(10)}
#: Rows that are floors themselves, never checked against one.
FLOORS = ("popularity", "random")


def below_popularity(results: list[MethodResult], results_dir: Path) -> dict[str, str]:
    """display -> why, for each method not significantly above Popularity in any protocol it ran.

    "Competent before compared": a method shows it works on its own task by beating the floor there
    (per-case headline metric, paired Wilcoxon, Holm over the methods of a protocol); one that beats
    it in neither protocol has shown nothing, and a claim deciding with it is inconclusive. Empty
    when the suite has no Popularity run."""
    pop = next((m for m in results if m.method == "popularity"), None)
    if pop is None:
        return {}
    above: set[str] = set()
    why: dict[str, list[str]] = {}
    for protocol, metric in FLOOR_METRIC.items():
        base = per_case(pop, results_dir, protocol, metric)
        if base is None:
            continue
        per = {m.display: v for m in results if m.method not in FLOORS
               and (v := per_case(m, results_dir, protocol, metric)) is not None and len(v) == len(base)}
        low = against_floor(per, base, f"{protocol} {metric.key}")
        above |= set(per) - set(low)
        for name, reason in low.items():
            why.setdefault(name, []).append(reason)
    return {name: "; ".join(parts) for name, parts in why.items() if name not in above}


def against_floor(per: dict[str, np.ndarray], base: np.ndarray, metric: str) -> dict[str, str]:
    """name -> why, for each per-case series of ``per`` not significantly above the floor's ``base``
    (mean gain > 0 and Holm-corrected paired Wilcoxon p < 0.05 over ``per``): the one rule of the floor."""
    tests = {name: paired_test(v, base) for name, v in per.items()}
    adjusted = holm({name: t.p_value for name, t in tests.items()})
    return {name: (f"{metric} {100 * per[name].mean():.2f} vs Popularity {100 * base.mean():.2f}, "
                   f"Holm p={format_p(adjusted[name][0])}")
            for name, t in tests.items() if not (t.mean_diff > 0 and adjusted[name][1])}


def floor_lines(below: dict[str, str], results: list[MethodResult]) -> list[str]:
    """Markdown under the claims: which methods the Popularity floor left out of the verdicts
    (nothing when no method but the floors ran: there is nothing to check)."""
    if all(m.method in FLOORS for m in results):
        return []
    if not any(m.method == "popularity" for m in results):
        return ["", "Competence floor: Popularity not in this run, so no claim is checked against it."]
    if not below:
        return ["", "Competence floor: every method is significantly above Popularity in at least one protocol "
                "(per-case Table 1 HR@50 or next-item HR@10, paired Wilcoxon, Holm)."]
    return ["", "Competence floor: not significantly above Popularity in any protocol (a claim deciding with one "
            "of them is inconclusive): " + "; ".join(f"{k} ({v})" for k, v in below.items()) + "."]
