"""How noisy each number is: cases per test group, the 95 % CI half-width of the headline metric,
and which differences to the group's best lie inside that width ("within noise").

On little data (MovieLens-100k leaves 179 test cases) a method "losing" to Popularity by a few
points says nothing. The headline metrics are hit rates (item-to-item HR@50, the paper's figure
metric; next-item HR@10), so their percentile bootstrap follows from each group's case and hit
counts, which every run stores (``significance.bootstrap_ci_hits``). The interval covers the
sampling of test cases, not seeds (Table 1 shows the seed std).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmark.evaluation.significance import bootstrap_ci_hits
from benchmark.reporting.results import MethodResult

HEADLINE = {"item-to-item": "HR@50", "next-item": "HR@10"}
N_BOOT = 2000
SMALL = 1000  # cases: below this, say so under the table
HEADER = ["protocol", "group", "cases", "method", "value", "ci95_half_width", "best", "within_noise"]


def half_width(value_pct: float, n: int, seed: int = 0) -> float:
    """Half-width, in points, of the 95 % percentile-bootstrap interval of a hit rate of ``n`` cases."""
    if n <= 0 or value_pct != value_pct:
        return float("nan")
    low, high = bootstrap_ci_hits(int(round(value_pct / 100 * n)), n, n_boot=N_BOOT, seed=seed)
    return 100 * (high - low) / 2


def groups_of(groups: Sequence[dict]) -> list[str]:
    """The top-level groups (no crossed ``a/b`` groups) with cases, in stored order."""
    out: list[str] = []
    for metrics in groups:
        out += [g for g, row in metrics.items() if "/" not in g and row.get("n", 0) and g not in out]
    return out


def noise_rows(columns: list[tuple[str, dict[str, dict]]], metric: str, protocol: str) -> list[list[str]]:
    """CSV rows (:data:`HEADER`): per group and column, value, half-width, best and within-noise.

    ``columns``: (name, {group: {"n": cases, metric: percent}}). Within noise: the difference to the
    group's best is at most the larger of the two half-widths.
    """
    rows = []
    for group in groups_of([c for _, c in columns]):
        cells = [(name, g[group]) for name, g in columns if group in g and g[group].get("n")]
        if not cells:
            continue
        stats = {name: (float(row[metric]), int(row["n"]), half_width(float(row[metric]), int(row["n"])))
                 for name, row in cells}
        best = max(stats, key=lambda k: stats[k][0])
        bv, _, bw = stats[best]
        for name, (v, n, w) in stats.items():
            within = name != best and abs(bv - v) <= max(w, bw)
            rows.append([protocol, group, str(n), name, f"{v:.3f}", f"{w:.3f}", "yes" if name == best else "no",
                         "yes" if within else "no"])
    return rows


def noise_markdown(rows: list[list[str]], metric: str, protocol: str, absent: list[str] = ()) -> list[str]:
    """A group x method table of 'value ±half-width', best in bold, '(within noise)' marks."""
    if not rows:
        return []
    names = list(dict.fromkeys(r[3] for r in rows))
    groups = list(dict.fromkeys(r[1] for r in rows))
    cell = {(r[1], r[3]): r for r in rows}
    lines = [f"### Noise: cases and 95 % CI half-widths of {metric} ({protocol})", "",
             "| group | cases | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for g in groups:
        n = next(r[2] for r in rows if r[1] == g)
        out = []
        for name in names:
            r = cell.get((g, name))
            if r is None:
                out.append("")
                continue
            v = f"**{float(r[4]):.2f}**" if r[6] == "yes" else f"{float(r[4]):.2f}"
            out.append(f"{v} ±{float(r[5]):.2f}" + (" (within noise)" if r[7] == "yes" else ""))
        lines.append(f"| {g} | {n} | " + " | ".join(out) + " |")
    small = [g for g in groups if int(next(r[2] for r in rows if r[1] == g)) < SMALL]
    lines += ["", f"Cells: {metric} in percent (mean over seeds) ± the half-width of its 95 % percentile-bootstrap "
              f"interval over the group's test cases ({N_BOOT} resamples; seed variation is not in it). Bold: the "
              "group's best. Within noise: the difference to the best is no larger than the larger of the two "
              "half-widths, so this data cannot tell the two apart."]
    if small:
        which = "Every group has" if len(small) == len(groups) else f"{', '.join(small)}: groups with"
        lines.append(f"{which} fewer than {SMALL:,} test cases: differences of a few points are noise here; "
                     "read each number with its half-width.")
    if absent:
        lines += ["", "Not in this table:", *absent]
    return lines


def matching_columns(results: list[MethodResult], protocol: str) -> list[tuple[str, dict[str, dict]]]:
    """(display, {group: {"n", metric}}) of every finished method, metric = the protocol's headline (seed mean)."""
    metric = HEADLINE[protocol]
    out = []
    for m in results:
        done = [r for r in m.records if r.status == "done"]
        stored = [r.next_item_metrics if protocol == "next-item" else r.metrics for r in done]
        stored = [s for s in stored if s]
        if not stored:
            continue
        groups = {g: {"n": row.get("n", 0),
                      metric: (m.next_value(g, metric) if protocol == "next-item" else m.value(g, metric))}
                  for g, row in stored[0].items() if metric in row}
        out.append((m.display, groups))
    return out
