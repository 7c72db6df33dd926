"""Competent before compared, on the transfer target: every condition a table or claim reads,
against Popularity trained on the same target view (per-case next-item HR@10, paired, Holm).

Early stopping cannot tell a plateau at the popularity floor from convergence: on the twin at
``e64dd58`` GRU4Rec and NextItNet stopped after 50-110 steps (patience 3 epochs of ~10 steps) at
HR@10 6.98 / 7.07 against Popularity's 7.66, while GRU4Rec trained on leaves that plateau after
~1,300 steps (HR@10 30.1). A method not significantly above the floor has not shown it works on
this task, and a claim deciding with it is inconclusive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.evaluation.metrics import HR
from benchmark.evaluation.significance import paired_test
from benchmark.fsutil import load_result_array
from benchmark.reporting.significance import against_floor, paired_table

#: The floor every trained condition must clear (a ``transfer.references`` method).
FLOOR = "popularity"


def per_case_hr10(recs: list[dict]) -> np.ndarray | None:
    """Per-case next-item HR@10 of a condition, averaged over its seeds (None without records)."""
    vals = [HR(10)(load_result_array(Path(r["folder"]) / "next_item_ranks.npy")) for r in recs]
    return np.mean(vals, axis=0) if vals else None


def below_floor(columns: list[tuple[str, list[dict]]], floor: list[dict]) -> dict[str, str]:
    """label -> why, for each condition not significantly above the floor (Holm over ``columns``)."""
    base = per_case_hr10(floor)
    if base is None:
        return {}
    per = {label: v for label, recs in columns if (v := per_case_hr10(recs)) is not None and len(v) == len(base)}
    return against_floor(per, base, "HR@10")


def competence_section(columns: list[tuple[str, list[dict]]], floor: list[dict]) -> list[str]:
    """Markdown: each condition minus Popularity (per-case HR@10, paired Wilcoxon, Holm), and who is below."""
    base = per_case_hr10(floor)
    if base is None:
        return ["Competence against Popularity: not run (add `references: [popularity]` to the suite's transfer "
                "section and `popularity` to its methods).", ""]
    per = {label: v for label, recs in columns if (v := per_case_hr10(recs)) is not None and len(v) == len(base)}
    lines = [f"Competence on the target: per-case next-item HR@10 of each condition minus Popularity's "
             f"({100 * base.mean():.2f}, trained on the same target view), positive = better, paired Wilcoxon over "
             f"{len(base)} cases (each side averaged over its seeds), Holm-corrected:", ""]
    paired_table({label: paired_test(v, base) for label, v in per.items()}, lines)
    below = against_floor(per, base, "HR@10")
    lines += ["", ("**Not above Popularity** (no evidence it works on this task; a claim deciding with it is "
                   "inconclusive): " + "; ".join(f"{k} ({v})" for k, v in below.items()) + ".") if below
              else "Every condition is significantly above Popularity.", ""]
    return lines
