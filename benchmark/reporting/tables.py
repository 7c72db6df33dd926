"""Tables 1 and 3 in the papers' shapes (CSV), Markdown beside the paper's numbers, and LaTeX."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from benchmark.reporting.results import (
    METRICS,
    NEXT_ITEM_METRICS,
    PROPOSAL_COLUMNS,
    MethodResult,
    paper_table,
    paper_value,
)

TEST_USERS = ("overlapped", "unseen")
TABLE3_METRICS = METRICS
TABLE3_GROUP = "overlapped"  # the paper does not say; Table 1's first block (stated in every title)
ABLATIONS = {"wo_user_view_delta": "uniembedding-wo-user-view", "wo_cross_domain_delta": "uniembedding-wo-cross-domain"}
#: Table 3's rows by variant: the full model, the paper's two ablations, then our [proposal] variant(s).
TABLE3_VARIANTS = {"uniembedding": "UniEmb (full)", "uniembedding-wo-user-view": "w/o user view",
                   "uniembedding-wo-cross-domain": "w/o cross-domain",
                   "uniembedding-earlier-view": "earlier-part user view [proposal]"}


def _fmt(x: float, digits: int = 3) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table1_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    """Rows test_users x metric, one column per method (mean over seeds; '' when skipped)."""
    header = ["test_users", "metric"] + [m.display for m in results]
    rows = []
    for users in TEST_USERS:
        for metric in METRICS:
            rows.append([users, metric] + [_fmt(m.value(users, metric)) for m in results])
    return header, rows


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def table1_markdown(results: list[MethodResult], title: str, paper: bool = True,
                    not_run: Sequence[str] = ()) -> str:
    """Our numbers with the paper's beside them, 'ours (paper)', where the method is in both.

    ``paper=False`` (not the paper's XMarket): ours only. ``not_run``: the suite's methods without
    a run, named under the table with the skipped and failed ones.
    """
    ref_table = paper_table("table1_matching_xmarket") if paper else []
    lines = [f"### {title}", "",
             "| test users | metric | " + " | ".join(m.display for m in results) + " |",
             "|---|---|" + "---|" * len(results)]
    for users in TEST_USERS:
        for metric in METRICS:
            cells = []
            for m in results:
                if m.status != "done":
                    cells.append(m.status)  # "skipped" or "failed"
                    continue
                ours = _fmt(m.value(users, metric))
                std = m.std(users, metric)
                if not math.isnan(std):
                    ours += f" ±{std:.2f}"
                ref = paper_value(ref_table, m.paper_column, test_users=users, metric=metric) if m.paper_column else None
                cells.append(f"{ours} ({ref:.3f})" if ref is not None else ours)
            lines.append(f"| {users} | {metric} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: ours (paper Table 1) in percent; ours is the mean over seeds (± std when > 1 seed)." if paper
                 else "Cells: ours in percent, the mean over seeds (± std when > 1 seed). The paper's Table 1 numbers "
                 "are not shown: this is not the paper's XMarket.")
    lines += proposal_notes(results)
    lines += absent_lines(results, not_run)
    return "\n".join(lines)


def absent_lines(results: list[MethodResult], not_run: Sequence[str] = ()) -> list[str]:
    """'- CLIP: skipped, dataset lacks text (...)' for every method a table has no numbers for.

    Skipped and failed runs by their plain name (not an encoder-dependent column label), then one
    line naming the suite's methods that did not run at all.
    """
    out = []
    for m in results:
        if m.status == "failed":
            out.append(f"- {m.display}: failed: {m.reason} (traceback: {m.records[0].tags.get('failure_log', '?')})")
        elif m.status != "done":
            out.append(f"- {m.display}: skipped, {m.reason}")
    if not_run:
        out.append(f"- not run in this report: {', '.join(not_run)} (see \"Not run in this report\")")
    return out


def proposal_notes(results: list[MethodResult]) -> list[str]:
    """One line per [proposal] column present: what it is and why it is not the paper's."""
    return [f"- {m.display}: {PROPOSAL_COLUMNS[m.method].note}." for m in results if m.method in PROPOSAL_COLUMNS]


def table1_latex(results: list[MethodResult], title: str) -> str:
    cols = "ll" + "r" * len(results)
    lines = [r"\begin{table}[t]", rf"\caption{{{_tex(title)}}}", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             "Test users & Metric & " + " & ".join(_tex(m.display) for m in results) + r" \\", r"\midrule"]
    for users in TEST_USERS:
        for metric in METRICS:
            lines.append(f"{users} & {_tex(metric)} & " + " & ".join(
                _fmt(m.value(users, metric)) or "--" for m in results) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    return s.replace("_", r"\_").replace("@", "@").replace("&", r"\&").replace("%", r"\%")


def table3_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]] | None:
    """Metric deltas of the two ablations against the full model (paper Table 3's shape)."""
    by_name = {m.method: m for m in results if m.status == "done"}
    full = by_name.get("uniembedding")
    if full is None or not any(method in by_name for method in ABLATIONS.values()):
        return None
    header = ["metric"] + list(ABLATIONS)
    rows = []
    for metric in TABLE3_METRICS:
        row = [metric]
        for method in ABLATIONS.values():
            ablation = by_name.get(method)
            row.append(_fmt(ablation.value(TABLE3_GROUP, metric) - full.value(TABLE3_GROUP, metric))
                       if ablation else "")
        rows.append(row)
    return header, rows


def table3_markdown(header: list[str], rows: list[list[str]], title: str, paper_numbers: bool = True) -> str:
    paper = paper_table("table3_ablation_xmarket") if paper_numbers else []
    lines = [f"### {title}", "", "| metric | " + " | ".join(header[1:]) + " |", "|---|" + "---|" * (len(header) - 1)]
    for row in rows:
        cells = []
        for col, value in zip(header[1:], row[1:], strict=True):
            ref = paper_value(paper, col, metric=row[0])
            cells.append(f"{value} ({ref:+.3f})" if value and ref is not None else (value or "not run"))
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    lines += ["", f"Cells: ablation minus full UniEmbedding on {TABLE3_GROUP} test users, percentage points "
              + ("(paper Table 3 in brackets)." if paper_numbers else "(the paper's Table 3 is not shown: this is not "
                 "the paper's XMarket).")]
    return "\n".join(lines)


def table3_variant_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]] | None:
    """Table 3 by variant, one row each (the full model first): absolute metrics on the overlapped users,
    each one's delta against the full model, and why each run's training stopped. None when no
    variant besides the full model ran."""
    by_name = {m.method: m for m in results if m.status == "done"}
    full = by_name.get("uniembedding")
    present = [name for name in TABLE3_VARIANTS if name in by_name]
    if full is None or len(present) < 2:
        return None
    header = ["variant", "method", *METRICS, *(f"{k}_delta" for k in METRICS), "stop_reason"]
    rows = []
    for name in present:
        m = by_name[name]
        deltas = ["" if m is full else _fmt(m.value(TABLE3_GROUP, k) - full.value(TABLE3_GROUP, k)) for k in METRICS]
        stops = sorted({str(r.training.get("stop_reason") or "not recorded") for r in m.records if r.status == "done"})
        rows.append([TABLE3_VARIANTS[name], name, *(_fmt(m.value(TABLE3_GROUP, k)) for k in METRICS), *deltas,
                     "/".join(stops)])
    return header, rows


def table3_variant_markdown(header: list[str], rows: list[list[str]], title: str, paper_numbers: bool = True) -> str:
    """The variant rows as 'value (delta vs full)' cells, with the paper's delta where it has one
    (``paper_numbers=False``: not the paper's XMarket, none shown)."""
    paper = paper_table("table3_ablation_xmarket") if paper_numbers else []
    paper_col = {method: col for col, method in ABLATIONS.items()}
    lines = [f"### {title}", "", "| variant | " + " | ".join(METRICS) + " | stop reason |",
             "|---|" + "---|" * (len(METRICS) + 1)]
    for row in rows:
        values, deltas = row[2:2 + len(METRICS)], row[2 + len(METRICS):2 + 2 * len(METRICS)]
        cells = []
        for metric, value, delta in zip(METRICS, values, deltas, strict=True):
            ref = paper_value(paper, paper_col[row[1]], metric=metric) if row[1] in paper_col else None
            cell = value + (f" ({float(delta):+.3f})" if delta else "")
            cells.append(cell + (f" [paper {ref:+.3f}]" if ref is not None else ""))
        lines.append(f"| {row[0]} | " + " | ".join(cells) + f" | {row[-1]} |")
    lines += ["", f"Cells: {TABLE3_GROUP} test users, percent (delta against the full model, pp"
              + ("; the paper's Table 3 delta where it has the row" if paper_numbers else "") + "). Rows marked "
              "[proposal] are ours, not the paper's."]
    return "\n".join(lines)


NEXT_ITEM_USERS = ("all", "overlapped", "unseen")


def next_item_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]] | None:
    """The next-item table: test users x metric, one column per method with a user encoder."""
    present = [m for m in results if m.has_next_item]
    if not present:
        return None
    header = ["test_users", "metric"] + [m.display for m in present]
    rows = [[users, metric] + [_fmt(m.next_value(users, metric)) for m in present]
            for users in NEXT_ITEM_USERS for metric in NEXT_ITEM_METRICS]
    return header, rows


def next_item_markdown(results: list[MethodResult], title: str, absent: list[str] = ()) -> str | None:
    """Markdown of the next-item table, with the item-to-item HR@50 beside it for each method.

    ``absent``: lines naming the sequence methods without next-item numbers (``absent_lines``).
    """
    present = [m for m in results if m.has_next_item]
    if not present:
        return None
    lines = [f"### {title}", "",
             "| test users | metric | " + " | ".join(m.display for m in present) + " |",
             "|---|---|" + "---|" * len(present)]
    for users in NEXT_ITEM_USERS:
        for metric in NEXT_ITEM_METRICS:
            cells = []
            for m in present:
                cell = _fmt(m.next_value(users, metric))
                std = m.next_std(users, metric)
                cells.append(cell + (f" ±{std:.2f}" if not math.isnan(std) else ""))
            lines.append(f"| {users} | {metric} | " + " | ".join(cells) + " |")
    lines.append("| all | item-to-item HR@50 | " + " | ".join(_fmt(m.value("all", "HR@50")) for m in present) + " |")
    lines += ["", "Next-item protocol (the sequence methods' own): the user's whole time-ordered history before "
              "the target -> the held-out item, full ranking over all items (history items stay candidates "
              "unless evaluation.exclude_history), same exact-rank and tie rules as Table 1; percent, mean over "
              "seeds. The last row repeats each method's item-to-item HR@50 so a weak item-to-item score can be "
              "read beside its next-item score. Methods without a user/sequence encoder are absent."]
    lines += proposal_notes(present)
    if absent:
        lines += ["", "Sequence methods without next-item numbers here:", *absent]
    return "\n".join(lines)
