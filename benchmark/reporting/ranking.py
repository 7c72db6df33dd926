"""Table 4 (AUC / logloss per ranking model and embedding source) beside the paper, DeLong tests, claim C9.

From stored cell results only. Significance: DeLong's test of each embedding row against "w/o
Emb." on the same test rows (one CTR dataset for every cell), run per seed; a comparison's
p-value is the largest over seeds (it is significant only if every seed is), then Holm-corrected
across the embedding rows of one model. Beside the table: the training positives every row used
and each cell's budget (reporting/ranking_budget.py), and where the gain comes from
(reporting/ranking_gains.py: AUC on overlapped vs unseen users and head vs tail items).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkError
from benchmark.evaluation.significance import holm
from benchmark.fsutil import load_result_array
from benchmark.grid.failures import read_failures
from benchmark.machine import versions_line
from benchmark.reporting.budget import SETTLED
from benchmark.reporting.claims import Claim, budget_reason, claim_table, respect_budget
from benchmark.reporting.paper_data import header_lines, on_paper_data
from benchmark.reporting.ranking_budget import HEADER as BUDGET_HEADER
from benchmark.reporting.ranking_budget import (
    budget_rows,
    budget_table,
    cell_training,
    ranking_curves,
    source_code_version,
    source_stop_reason,
    sources_line,
    stopping_line,
    training_data,
)
from benchmark.reporting.ranking_gains import HEADER as GROUP_HEADER
from benchmark.reporting.ranking_gains import gain_paragraph, group_summary, group_table
from benchmark.reporting.results import paper_table, paper_value
from benchmark.reporting.significance import format_p
from benchmark.reporting.tables import to_csv
from benchmark.reporting.writers import keyed_dir, staged_report, write_text
from benchmark.store.records import RankingRecord, finished_records
from benchmark.store.tracking import code_changes, code_version
from benchmark.tasks.ranking.metrics import auc_se, delong_test
from benchmark.tasks.ranking.models import DISPLAY, MODELS
from benchmark.tasks.ranking.suite import NONE

PAPER_ROWS = ("none", "VQRec", "UAE", "PGG", "UniEmb")
PAPER_LABEL = {"none": "w/o Emb.", "VQRec": "VQ-Rec", "UAE": "UAE", "PGG": "PGG", "UniEmb": "UniEmb"}
RANKING_SUITE = "xmarket-ranking"


def load_ranking_records(results_dir: Path, suite: str, keys: set[str] | None = None, dataset: str | None = None,
                         scale: str | None = None) -> list[RankingRecord]:
    """Cells of a ranking suite; without ``keys``, those on the newest cell's CTR dataset (newest per cell).

    ``dataset`` / ``scale`` restrict the choice to cells on that dataset and size preset.
    """
    folder = Path(results_dir) / suite
    records = finished_records(folder, RankingRecord)  # unreadable ones named in a warning and left out
    records = [r for r in records if (dataset is None or r.dataset.get("name") == dataset)
               and (scale is None or r.scale == scale)]
    if keys is not None:
        records = [r for r in records if r.run_key in keys]
    elif records:
        newest = records[-1].ctr.get("ctr_hash")
        records = [r for r in records if r.ctr.get("ctr_hash") == newest]
    if not records:
        raise BenchmarkError(f"no finished ranking cells for suite {suite!r} under {folder} (run it first)")
    latest = {}
    for r in records:
        latest[(r.model, r.embedding, r.seed)] = r
    return list(latest.values())


def _order(records: list[RankingRecord]) -> list[str]:
    rows = {r.embedding: r.paper_row for r in records}

    def key(name: str) -> tuple[int, str]:
        row = rows[name]
        return (PAPER_ROWS.index(row) if row in PAPER_ROWS else len(PAPER_ROWS), name)

    return sorted(rows, key=key)


def summarise(records: list[RankingRecord]) -> dict[tuple[str, str], dict]:
    """(model, embedding) -> mean/std of AUC and logloss over seeds, with the seeds."""
    cells: dict[tuple[str, str], list[RankingRecord]] = defaultdict(list)
    for r in records:
        cells[(r.model, r.embedding)].append(r)
    out = {}
    for key, recs in cells.items():
        aucs = np.array([r.metrics["auc"] for r in recs])
        losses = np.array([r.metrics["logloss"] for r in recs])
        out[key] = {"auc": float(aucs.mean()), "auc_std": float(aucs.std()) if len(recs) > 1 else float("nan"),
                    "logloss": float(losses.mean()),
                    "logloss_std": float(losses.std()) if len(recs) > 1 else float("nan"),
                    "seeds": sorted(r.seed for r in recs), "display": recs[0].embedding_display,
                    "paper_row": recs[0].paper_row}
    return out


def delong_tests(records: list[RankingRecord], results_dir: Path) -> dict[tuple[str, str], dict]:
    """(model, embedding) -> DeLong vs w/o Emb.: per-seed z and p, the max p, and Holm within a model."""
    by = {(r.model, r.embedding, r.seed): r for r in records}
    out: dict[tuple[str, str], dict] = {}
    for model in {r.model for r in records}:
        raw = {}
        for r in records:
            if r.model != model or r.embedding == NONE or (model, NONE, r.seed) not in by:
                continue
            base = by[(model, NONE, r.seed)]
            folder_a = Path(results_dir) / r.suite / r.run_key
            folder_b = Path(results_dir) / base.suite / base.run_key
            labels = load_result_array(folder_a / "test_labels.npy")
            if not np.array_equal(labels, load_result_array(folder_b / "test_labels.npy")):
                raise BenchmarkError(f"{folder_a}: test rows differ from {folder_b} (another CTR dataset)")
            res = delong_test(labels, load_result_array(folder_a / "test_scores.npy"),
                              load_result_array(folder_b / "test_scores.npy"))
            entry = out.setdefault((model, r.embedding), {"z": {}, "p": {}})
            entry["z"][r.seed], entry["p"][r.seed] = res.z, res.p_value
        for (m, emb), entry in out.items():
            if m == model:
                entry["p_max"] = max(entry["p"].values())
                raw[emb] = entry["p_max"]
        for emb, (p, _) in (holm(raw).items() if raw else []):
            out[(model, emb)]["p_holm"] = p
    return out


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std == std else "")


def table4(records: list[RankingRecord], results_dir: Path,
           paper_numbers: bool = True) -> tuple[list[str], list[list[str]], str]:
    """Table 4 in the paper's shape (rows: embeddings; columns: model AUC/logloss), CSV rows and Markdown.

    ``paper_numbers=False`` (not the paper's XMarket): the paper column says so instead of its numbers.
    """
    summary, tests = summarise(records), delong_tests(records, results_dir)
    models = [m for m in MODELS if any(r.model == m for r in records)]
    paper = paper_table("table4_ranking_xmarket")
    header = ["pretrained_embeddings"] + [f"{DISPLAY[m]}_{k}" for m in models for k in ("AUC", "Logloss")]
    csv_rows, md = [], []
    md.append("| Pretrained embeddings | " + " | ".join(f"{DISPLAY[m]} AUC | {DISPLAY[m]} Logloss | paper AUC / Logloss"
                                                     for m in models) + " |")
    md.append("|---|" + "---|---|---|" * len(models))
    for emb in _order(records):
        first = next(v for (m, e), v in summary.items() if e == emb)
        label = "w/o Emb." if emb == NONE else first["display"]
        row_csv, cells = [label], []
        for m in models:
            s = summary.get((m, emb))
            if s is None:
                row_csv += ["", ""]
                cells.append("not run | not run | -")
                continue
            row_csv += [f"{s['auc']:.4f}", f"{s['logloss']:.4f}"]
            t = tests.get((m, emb))
            sig = ""
            if t is not None:
                sig = f" (p={format_p(t.get('p_holm', t['p_max']))}{'*' if t.get('p_holm', 1) < 0.05 else ''})"
            pa = paper_value(paper, f"{DISPLAY[m]}_AUC", pretrained_embeddings=s["paper_row"] or "")
            pl = paper_value(paper, f"{DISPLAY[m]}_Logloss", pretrained_embeddings=s["paper_row"] or "")
            ptxt = f"{pa:.4f} / {pl:.4f}" if pa is not None else "not in the paper"
            if not paper_numbers:
                ptxt = "not shown (not the paper's XMarket)"
            cells.append(f"{_fmt(s['auc'], s['auc_std'])}{sig} | {_fmt(s['logloss'], s['logloss_std'])} | {ptxt}")
        csv_rows.append(row_csv)
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    return header, csv_rows, "\n".join(md)


def noise_lines(records: list[RankingRecord], results_dir: Path) -> list[str]:
    """Per cell: test rows, the AUC's 95 % CI half-width (1.96 x DeLong's standard error, lowest seed) and
    whether its gain over w/o Emb. is within noise (the Holm-corrected DeLong test of Table 4 not below 0.05)."""
    tests = delong_tests(records, results_dir)
    first: dict[tuple[str, str], RankingRecord] = {}
    for r in sorted(records, key=lambda r: r.seed):
        first.setdefault((r.model, r.embedding), r)
    lines = ["### Noise: test rows and 95 % CI half-widths of AUC", "",
             "| model | embeddings | test rows | positives | AUC ± half-width | vs w/o Emb. |", "|---|---|---|---|---|---|"]
    order = list(MODELS)
    for (model, emb), r in sorted(first.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                                  else len(order), kv[0])):
        folder = Path(results_dir) / r.suite / r.run_key
        labels = load_result_array(folder / "test_labels.npy")
        width = 1.96 * auc_se(labels, load_result_array(folder / "test_scores.npy"))
        t = tests.get((model, emb))
        vs = "-" if t is None else ("within noise" if t.get("p_holm", t["p_max"]) >= 0.05 else "outside noise")
        lines.append(f"| {DISPLAY[model]} | {'w/o Emb.' if emb == NONE else r.embedding_display} | {len(labels)} | "
                     f"{int(np.count_nonzero(labels))} | {r.metrics['auc']:.4f} ±{width:.4f} | {vs} |")
    return lines + ["", "Half-width: 1.96 x DeLong's standard error of the cell's AUC (its lowest seed) over the test "
                    "rows. Within noise: the Holm-corrected DeLong test against w/o Emb. (Table 4's p) is not "
                    "below 0.05, so these rows cannot tell the two apart."]


def check_c9(records: list[RankingRecord], results_dir: Path) -> Claim:
    """C9: pretrained embeddings raise AUC for all three ranking models, and UniEmb's raise it most."""
    text = "pretrained embeddings raise ranking AUC for DCNv2, FinalMLP and DIN; UniEmb best"
    summary, tests = summarise(records), delong_tests(records, results_dir)
    models = [m for m in MODELS if (m, NONE) in summary]
    paper_embs = sorted({e for (m, e), s in summary.items() if e != NONE and s["paper_row"] in PAPER_ROWS})
    uni = [e for e in paper_embs if summary[next(k for k in summary if k[1] == e)]["paper_row"] == "UniEmb"]
    if not models or not uni:
        return Claim("C9", text, "not run", "needs the w/o Emb. cells and UniEmb's embeddings in the ranking suite")
    raises, best, notes, unknown = True, True, [], []
    for m in models:
        base = summary[(m, NONE)]["auc"]
        for e in paper_embs:
            s = summary.get((m, e))
            if s is None:
                continue
            t = tests.get((m, e), {})
            ok = s["auc"] > base
            raises &= ok
            notes.append(f"{DISPLAY[m]} {s['display']} {s['auc'] - base:+.4f}"
                         + (f" (p={format_p(t.get('p_holm', t.get('p_max', float('nan'))))})" if t else ""))
        if (m, uni[0]) not in summary:  # UniEmb's cell of this model not run: whether it is best is unknown
            unknown.append(DISPLAY[m])
            continue
        ranked = sorted((v["auc"], e) for (mm, e), v in summary.items() if mm == m)
        top = ranked[-1][1]
        best &= top == uni[0]
        if top != uni[0]:
            notes.append(f"{DISPLAY[m]}: best is {summary[(m, top)]['display']}, not UniEmb")
    missing = [DISPLAY[m] for m in MODELS if m not in models]
    evidence = ("AUC gain over w/o Emb. (Holm-corrected DeLong p, max over seeds): " + "; ".join(notes)
                + (f"; models not run: {', '.join(missing)}" if missing else "")
                + (f"; UniEmb not run with: {', '.join(unknown)}" if unknown else "")
                + f"; paper embedding rows run: {', '.join(summary[(models[0], e)]['display'] for e in paper_embs if (models[0], e) in summary)}")
    status = "holds" if raises and best else "fails"
    if (missing or unknown) and status == "holds":
        status = "not run"
    unsettled = [f"{r.model}+{r.embedding} (seed {r.seed}): {budget_reason(cell_training(r))}" for r in records
                 if budget_reason(cell_training(r)) not in SETTLED]
    sources = {(r.embedding, r.embedding_seed): source_stop_reason(r, results_dir) for r in records
               if r.embedding != NONE}  # every row's embeddings decide C9 too (gains, and whether UniEmb is best)
    unsettled += [f"{e} embeddings (matching seed {s}): {why}" for (e, s), why in sorted(sources.items())
                  if why not in SETTLED]
    claim = respect_budget(Claim("C9", text, status, evidence), unsettled)
    _, odd = training_data(records)
    if odd and claim.status in ("holds", "fails"):  # rows on different training examples: not a fair comparison
        shown = ", ".join(odd[:4]) + (f" (+{len(odd) - 4} more)" if len(odd) > 4 else "")
        claim = Claim("C9", text, f"inconclusive (rows trained on different examples: {shown})", evidence)
    return claim


def c9_from_results(results_dir: Path, suite: str = RANKING_SUITE) -> Claim | None:
    """C9 for the matching report, when the ranking suite has stored cells (else None)."""
    try:
        records = load_ranking_records(results_dir, suite)
    except BenchmarkError:
        return None
    return check_c9(records, results_dir)


def write_ranking_reports(suite: str, results_dir: Path, reports_dir: Path, keys: set[str] | None = None,
                          dataset: str | None = None, scale: str | None = None) -> str:
    """Write table4.csv, table4_groups.csv, training_budget.csv, learning_curves.png/pdf, report.md and
    claims.md for a ranking suite; return the Markdown report."""

    records = load_ranking_records(results_dir, suite, keys, dataset, scale)
    labels = sorted({r.dataset.get("label", "?") for r in records})
    synthetic = " - SYNTHETIC DATA, not XMarket" if any(r.dataset.get("synthetic") for r in records) else ""
    final = keyed_dir(reports_dir, suite, records[0].dataset.get("name", "data"), records[0].scale)
    order = _order(records)
    names = {r.embedding: ("w/o Emb." if r.embedding == NONE else r.embedding_display) for r in records}
    models = [m for m in MODELS if any(r.model == m for r in records)]
    groups = group_summary(records)
    group_csv, group_md = group_table(groups, order, names, models)
    with staged_report(final) as out:
        paper = on_paper_data(r.dataset for r in records)
        header, rows, md = table4(records, results_dir, paper_numbers=paper)
        write_text(out / "table4.csv", to_csv(header, rows))
        write_text(out / "table4_groups.csv", to_csv(GROUP_HEADER, group_csv))
        write_text(out / "training_budget.csv", to_csv(BUDGET_HEADER, budget_rows(records)))
        curves = ranking_curves(records, names, f"Table 4 cells: validation AUC vs optimizer steps ({'; '.join(labels)})",
                                out / "learning_curves")
        ctr = records[0].ctr
        seeds = sorted({r.seed for r in records})
        claim = check_c9(records, results_dir)
        claim_lines = claim_table([claim], paper)
        write_text(out / "claims.md", f"# Claims check: {suite} on {'; '.join(labels)}{synthetic}\n\n" + "\n".join(claim_lines) + "\n")
        data_line, _ = training_data(records)
        versions = sorted({r.code_version for r in records})
        made = sorted({v for r in records if (v := source_code_version(r, results_dir))})
        parts = [f"# {suite} on {'; '.join(labels)}{synthetic}", "", *header_lines(r.dataset for r in records),
                 f"Table 4: CTR ranking, test AUC / logloss (mean ± std over seeds {seeds}), {'; '.join(labels)}{synthetic}",
                 "", md, "",
                 "p: DeLong's test against w/o Emb. on the same test rows, per seed; the largest p over seeds, "
                 "Holm-corrected over the embedding rows of each model (* = below 0.05).",
                 f"CTR data {ctr.get('ctr_hash')}: {ctr.get('train_rows')} train / {ctr.get('valid_rows')} valid / "
                 f"{ctr.get('test_rows')} test rows, {ctr.get('negatives')} same-domain negatives per positive, "
                 f"history <= {ctr.get('max_history')} items, split manifest {records[0].manifest_hash[:12]}.",
                 "", *noise_lines(records, results_dir), "", data_line, "", "### Training budget", "",
                 sources_line(records, names, results_dir), "", stopping_line(records)
                 + " Per cell: training_budget.csv; validation curves: learning_curves.png"
                 + ("" if curves else " (no curves recorded)") + ".", "", *budget_table(records, order, names), "",
                 "### Where the gain comes from", "",
                 "Test AUC per group of test rows (gain over w/o Emb. of the same model in brackets; table4_groups.csv): "
                 "overlapped / unseen = rows of cases whose user is / is not in training; head / tail = rows whose "
                 "candidate item is a head / tail item (top 50% of items by training frequency).", "",
                 *group_md, "", gain_paragraph(groups, names), "", "### Claims", "", *claim_lines, "", "### Provenance", "",
                 f"Built from {len(records)} stored cell(s) made by code version(s) {', '.join(versions)}"
                 + (f", on embeddings made by {', '.join(made)}" if made else "")
                 + f"; report written by code version {code_version()}. " + code_changes(sorted({*versions, *made})),
                 versions_line([r.machine for r in records]), "",
                 "| model | embeddings | seed | run key | MLflow run | embeddings from | code |", "|---|---|---|---|---|---|---|"]
        for r in sorted(records, key=lambda r: (r.model, r.embedding, r.seed)):
            src = r.embedding_source.get("run_key", "-") if r.embedding_source else "-"
            parts.append(f"| {DISPLAY[r.model]} | {r.embedding_display} | {r.seed} | {r.run_key} | {r.mlflow_run_id or '-'} | "
                         f"{src} | {r.code_version} |")
        failed = [f for f in read_failures(Path(results_dir) / suite, keys)
                  if not (Path(results_dir) / suite / f.key / "result.json").exists()]
        if failed:
            parts += ["", "### Failed cells (rerun to retry them)", ""] + [f"- {f.line()}" for f in failed]
        text = "\n".join(parts) + "\n"
        write_text(out / "report.md", text)
        return text
