"""Paired significance of the best method against every other, from the stored per-case ranks.

All runs of a suite share one split manifest, so their per-case NDCG@10 values pair up: a
Wilcoxon signed-rank test per comparison, Holm-corrected across the comparisons (design.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.evaluation.metrics import NDCG
from benchmark.evaluation.significance import holm, paired_test
from benchmark.reporting.results import MethodResult

METRIC = NDCG(10)


def _per_case(result: MethodResult, results_dir: Path) -> np.ndarray | None:
    """Per-case NDCG@10, averaged over the method's seeds (None when no ranks are stored)."""
    values = []
    for record in result.records:
        path = results_dir / record.suite / record.run_key / "ranks.npy"
        if record.status == "done" and path.exists():
            values.append(METRIC(np.load(path)))
    return np.mean(values, axis=0) if values else None


def significance_lines(results: list[MethodResult], results_dir: Path) -> list[str]:
    """Markdown lines: best method (by mean NDCG@10 over all cases) vs each other, Holm-corrected."""
    per_case = {m.display: v for m in results if (v := _per_case(m, results_dir)) is not None}
    if len(per_case) < 2:
        return []
    best = max(per_case, key=lambda name: per_case[name].mean())
    tests = {name: paired_test(per_case[best], values) for name, values in per_case.items() if name != best}
    adjusted = holm({name: t.p_value for name, t in tests.items()})
    lines = [f"Paired Wilcoxon signed-rank tests on per-case {METRIC.key} (all test cases), "
             f"{best} against each other method, Holm-corrected:", "",
             "| vs | mean diff (pp) | 95% CI | p | Holm p | significant (0.05) |", "|---|---|---|---|---|---|"]
    for name, t in tests.items():
        p_holm, significant = adjusted[name]
        lines.append(f"| {name} | {100 * t.mean_diff:+.3f} | [{100 * t.ci_low:+.3f}, {100 * t.ci_high:+.3f}] | "
                     f"{t.p_value:.2g} | {p_holm:.2g} | {'yes' if significant else 'no'} |")
    return lines
