"""Reports from stored results only: Tables 1/3 (CSV, Markdown, LaTeX), Figures 6/7, claims, provenance."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.machine import versions_line
from benchmark.reporting import coverage, figures, tables
from benchmark.reporting.claims import check_claims
from benchmark.reporting.results import aggregate, dataset_label, is_synthetic, load_records
from benchmark.reporting.significance import competence_lines, significance_lines
from benchmark.tracking import code_version

ABLATION_SUITE = "xmarket-ablation"
TRANSFER_SUITE = "xmarket-transfer"
C12_SUITE = "unim2rec-c12"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _suite_method_list(suite: str) -> list[str] | None:
    from benchmark import registry
    from benchmark.config import load_suite_file

    try:
        return list(load_suite_file(registry.suite_path(suite))["methods"])
    except BenchmarkError:
        return None


def _suite_methods(suite: str) -> set[str] | None:
    methods = _suite_method_list(suite)
    return None if methods is None else set(methods)


def report_dir(reports_dir: Path, suite: str, records: list) -> Path:
    """``reports/<suite>/<dataset>-<scale>/``; ``-subset`` when not all the suite's methods ran.

    Reports are keyed by what produced them, so a quick tiny or subset run never overwrites the
    default suite's committed report.
    """
    first = records[0]
    wanted = _suite_methods(suite)
    complete = wanted is None or wanted <= {r.method for r in records}
    return keyed_dir(reports_dir, suite, first.dataset.get("name", "data"), first.scale, complete)


def keyed_dir(reports_dir: Path, suite: str, dataset: str, scale: str, complete: bool = True) -> Path:
    """The one naming rule of every suite's report folder: ``<suite>/<dataset>-<scale>[-subset]``."""
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(dataset))
    return Path(reports_dir) / suite / f"{name}-{scale}{'' if complete else '-subset'}"


def write_suite_reports(suite: str, results_dir: Path, reports_dir: Path, keys: set[str] | None = None,
                        dataset: str | None = None, scale: str | None = None) -> str:
    """Write every table/figure the suite's results support; return the Markdown report text.

    Without ``keys``, the newest results (optionally of ``dataset`` and ``scale``) are reported.
    """
    records = load_records(results_dir, suite, keys, dataset=dataset, scale=scale)
    results = aggregate(records)
    label = dataset_label(records)
    synthetic = " - SYNTHETIC DATA, not XMarket" if is_synthetic(records) else ""
    out = report_dir(reports_dir, suite, records)
    parts = [f"# {suite} on {label}{synthetic}", ""]

    header, rows = tables.table1_rows(results)
    title1 = f"Table 1: item-to-item matching, {label}{synthetic}"
    _write(out / "table1.csv", tables.to_csv(header, rows))
    _write(out / "table1.tex", tables.table1_latex(results, title1))
    parts.append(tables.table1_markdown(results, title1))
    sig = significance_lines(results, results_dir)
    if sig:
        parts += ["", *sig]

    next_rows = tables.next_item_rows(results)
    if next_rows:
        title_n = f"Next-item retrieval (the sequence methods' protocol), {label}{synthetic}"
        _write(out / "next_item.csv", tables.to_csv(*next_rows))
        parts += ["", tables.next_item_markdown(results, title_n) or ""]
        parts += competence_lines(results, results_dir)
        sig_n = significance_lines(results, results_dir, protocol="next-item")
        if sig_n:
            parts += ["", *sig_n]

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
    suite_methods = _suite_method_list(suite)
    if suite_methods:
        ran = {r.method for r in records}
        missing = [m for m in suite_methods if m not in ran]
        not_run = coverage.not_run_lines(suite, suite_methods, ran, records[0].scale,
                                         coverage.device_methods(missing))
        if not_run:
            parts += ["", *not_run]

    transfer = None
    if (results_dir / TRANSFER_SUITE / "transfer").is_dir():  # C10/C11 come from the transfer suite
        from benchmark.transfer_report import load_transfer, transfer_claims

        try:
            transfer = transfer_claims(load_transfer(results_dir / TRANSFER_SUITE / "transfer"))
        except BenchmarkError:
            transfer = None
    c12 = results if suite == C12_SUITE else None
    if c12 is None and (results_dir / C12_SUITE).is_dir():  # C12 comes from UniM2Rec's ablation suite
        try:
            c12 = aggregate(load_records(results_dir, C12_SUITE))
        except BenchmarkError:
            c12 = None
    from benchmark.ranking.report import c9_from_results

    claims = check_claims(results, ablation_rows, c12=c12, transfer=transfer, c9=c9_from_results(results_dir))
    on_xmarket = {r.dataset.get("name") for r in records} <= {"xmarket", "xmarket-sim"}
    claim_lines = [] if on_xmarket else [
        "Informational: the papers' claims are about XMarket; this is another dataset, so the verdicts "
        "below describe it and do not confirm or refute the papers.", ""]
    claim_lines += ["| claim | status | evidence |", "|---|---|---|"] + [
        f"| {c.cid} {c.text} | **{c.status if on_xmarket else c.status + ' (informational)'}** | {c.evidence} |"
        for c in claims]
    _write(out / "claims.md", f"# Claims check: {suite} on {label}{synthetic}\n\n" + "\n".join(claim_lines) + "\n")
    parts += ["", "### Claims (C1..C12)", "", *claim_lines]

    prov = ["| method | seed | run key | MLflow run | manifest | fit s | eval s | code |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.method, r.seed)):
        prov.append(f"| {r.method} | {r.seed} | {r.run_key} | {r.mlflow_run_id or '-'} | {r.manifest_hash[:12]} | "
                    f"{r.timings.get('fit_s', '-')} | {r.timings.get('eval_s', '-')} | {r.code_version} |")
    versions = sorted({r.code_version for r in records})
    parts += ["", "### Provenance", "",
              f"Built from {len(records)} stored run(s) made by code version(s) {', '.join(versions)}; "
              f"report written by code version {code_version()} to `{suite}/{out.name}/`.",
              versions_line([r.machine for r in records]), "", *prov]
    text = "\n".join(parts) + "\n"
    _write(out / "report.md", text)
    return text
