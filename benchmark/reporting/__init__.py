"""Reports from stored results only: Tables 1/3 (CSV, Markdown, LaTeX), Figures 6/7, claims, provenance."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.reporting import figures, tables
from benchmark.reporting.claims import check_claims
from benchmark.reporting.results import aggregate, dataset_label, is_synthetic, load_records
from benchmark.reporting.significance import significance_lines

ABLATION_SUITE = "xmarket-ablation"
C12_SUITE = "unim2rec-c12"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_suite_reports(suite: str, results_dir: Path, reports_dir: Path, keys: set[str] | None = None) -> str:
    """Write every table/figure the suite's results support; return the Markdown report text."""
    records = load_records(results_dir, suite, keys)
    results = aggregate(records)
    label = dataset_label(records)
    synthetic = " - SYNTHETIC DATA, not XMarket" if is_synthetic(records) else ""
    out = reports_dir / suite
    parts = [f"# {suite} on {label}{synthetic}", ""]

    header, rows = tables.table1_rows(results)
    title1 = f"Table 1: item-to-item matching, {label}{synthetic}"
    _write(out / "table1.csv", tables.to_csv(header, rows))
    _write(out / "table1.tex", tables.table1_latex(results, title1))
    parts.append(tables.table1_markdown(results, title1))
    sig = significance_lines(results, results_dir)
    if sig:
        parts += ["", *sig]

    t3 = tables.table3_rows(results)
    ablation_rows = t3[1] if t3 else None
    if t3:
        title3 = f"Table 3: UniEmbedding ablation ({tables.TABLE3_GROUP} users), {label}{synthetic}"
        _write(out / "table3.csv", tables.to_csv(*t3))
        parts += ["", tables.table3_markdown(*t3, title3)]
    elif suite != ABLATION_SUITE and (results_dir / ABLATION_SUITE).is_dir():
        try:
            ablation = tables.table3_rows(aggregate(load_records(results_dir, ABLATION_SUITE)))
            ablation_rows = ablation[1] if ablation else None
        except BenchmarkError:
            ablation_rows = None

    figure_paths = figures.figure6_head_tail(results, f"Figure 6: HR@50 head vs tail items, {label}{synthetic}",
                                             out / "figure6_head_tail")
    share = records[0].dataset.get("domain_interactions", {})
    total = sum(share.values()) or 1
    fig7 = figures.figure7_domains(results, {d: c / total for d, c in share.items()},
                                   f"Figure 7: per-domain gain of UniEmb, {label}{synthetic}", out / "figure7_domains")
    figure_paths += fig7 or []
    parts += ["", "Figures: " + ", ".join(str(p) for p in figure_paths if p.suffix == ".png")]

    c12 = results if suite == C12_SUITE else None
    if c12 is None and (results_dir / C12_SUITE).is_dir():
        try:
            c12 = aggregate(load_records(results_dir, C12_SUITE))
        except BenchmarkError:
            c12 = None
    claims = check_claims(results, ablation_rows, c12)
    claim_lines = ["| claim | status | evidence |", "|---|---|---|"] + [
        f"| {c.cid} {c.text} | **{c.status}** | {c.evidence} |" for c in claims]
    _write(out / "claims.md", f"# Claims check: {suite} on {label}{synthetic}\n\n" + "\n".join(claim_lines) + "\n")
    parts += ["", "### Claims (C1..C12)", "", *claim_lines]

    prov = ["| method | seed | run key | MLflow run | manifest | fit s | eval s | code |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.method, r.seed)):
        prov.append(f"| {r.method} | {r.seed} | {r.run_key} | {r.mlflow_run_id or '-'} | {r.manifest_hash[:12]} | "
                    f"{r.timings.get('fit_s', '-')} | {r.timings.get('eval_s', '-')} | {r.code_version} |")
    parts += ["", "### Provenance", "", *prov]
    text = "\n".join(parts) + "\n"
    _write(out / "report.md", text)
    return text
