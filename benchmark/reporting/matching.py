"""The matching suites' report: Tables 1/3 (CSV, Markdown, LaTeX), Figures 6/7, claims C1..C12, provenance.

From stored results only; C9 comes from the ranking suite's cells, C10/C11 from the transfer grid."""

from __future__ import annotations

from pathlib import Path

from benchmark import registry
from benchmark.errors import BenchmarkError
from benchmark.fsutil import verify_result_file
from benchmark.machine import versions_line
from benchmark.reporting import budget, coverage, figures, noise, tables, timing
from benchmark.reporting.claims import check_claims, claim_table
from benchmark.reporting.paper_data import header_lines, on_paper_data
from benchmark.reporting.ranking import c9_from_results
from benchmark.reporting.results import aggregate, dataset_label, is_synthetic, load_records, plain_name
from benchmark.reporting.significance import (
    below_popularity,
    competence_lines,
    floor_lines,
    significance_lines,
)
from benchmark.reporting.transfer import load_transfer, transfer_claims
from benchmark.reporting.writers import report_dir, staged_report, suite_method_list, write_text
from benchmark.store.tracking import code_changes, code_version

ABLATION_SUITE = "xmarket-ablation"
TRANSFER_SUITE = "xmarket-transfer"
C12_SUITE = "unim2rec-c12"


def write_suite_reports(suite: str, results_dir: Path, reports_dir: Path, keys: set[str] | None = None,
                        dataset: str | None = None, scale: str | None = None) -> str:
    """Write every table/figure the suite's results support; return the Markdown report text.

    Without ``keys``, the newest results (optionally of ``dataset`` and ``scale``) are reported.
    """
    records = load_records(results_dir, suite, keys, dataset=dataset, scale=scale)
    for r in records:  # every metric is a function of the ranks: a flipped byte is named even when no test reads them
        if r.status == "done":
            for name in ("ranks.npy", "next_item_ranks.npy"):
                verify_result_file(Path(results_dir) / suite / r.run_key / name)
    results = aggregate(records)
    label = dataset_label(records)
    synthetic = " - SYNTHETIC DATA, not XMarket" if is_synthetic(records) else ""
    final = report_dir(reports_dir, suite, records)
    with staged_report(final) as out:
        paper = on_paper_data(r.dataset for r in records)  # else: informational claims, no paper numbers
        parts = [f"# {suite} on {label}{synthetic}", "", *header_lines(r.dataset for r in records)]
        suite_methods = suite_method_list(suite) or []
        ran = {r.method for r in records}
        not_run = [plain_name(m) for m in suite_methods if m not in ran]

        header, rows = tables.table1_rows(results)
        title1 = f"Table 1: item-to-item matching, {label}{synthetic}"
        write_text(out / "table1.csv", tables.to_csv(header, rows))
        write_text(out / "table1.tex", tables.table1_latex(results, title1))
        parts.append(tables.table1_markdown(results, title1, paper=paper, not_run=not_run))
        noise_rows = noise.noise_rows(noise.matching_columns(results, "item-to-item"), noise.HEADLINE["item-to-item"],
                                      "item-to-item")
        parts += ["", *noise.noise_markdown(noise_rows, noise.HEADLINE["item-to-item"], "item-to-item",
                                            tables.absent_lines(results, not_run))]
        sig = significance_lines(results, results_dir)
        if sig:
            parts += ["", *sig]

        next_rows = tables.next_item_rows(results)
        if next_rows:
            title_n = f"Next-item retrieval (the sequence methods' protocol), {label}{synthetic}"
            write_text(out / "next_item.csv", tables.to_csv(*next_rows))
            absent_n = _absent_sequence_methods(results, not_run, suite_methods)
            parts += ["", tables.next_item_markdown(results, title_n, absent_n) or ""]
            rows_n = noise.noise_rows(noise.matching_columns(results, "next-item"), noise.HEADLINE["next-item"],
                                      "next-item")
            noise_rows += rows_n
            parts += ["", *noise.noise_markdown(rows_n, noise.HEADLINE["next-item"], "next-item", absent_n)]
            parts += competence_lines(results, results_dir)
            sig_n = significance_lines(results, results_dir, protocol="next-item")
            if sig_n:
                parts += ["", *sig_n]

        t3 = tables.table3_rows(results)
        ablation_rows = t3[1] if t3 else None
        ablation_runs = _ablation_runs(results) if t3 else None
        if t3:
            title3 = f"Table 3: UniEmbedding ablation ({tables.TABLE3_GROUP} users), {label}{synthetic}"
            write_text(out / "table3.csv", tables.to_csv(*t3))
            parts += ["", tables.table3_markdown(*t3, title3, paper_numbers=paper)]
        elif suite != ABLATION_SUITE and (results_dir / ABLATION_SUITE).is_dir():
            try:
                ablation_results = aggregate(load_records(results_dir, ABLATION_SUITE))
                ablation = tables.table3_rows(ablation_results)
                ablation_rows = ablation[1] if ablation else None
                ablation_runs = _ablation_runs(ablation_results)
            except BenchmarkError:
                ablation_rows = None
        t3v = tables.table3_variant_rows(results)
        if t3v:
            title3v = f"Table 3 by variant ({tables.TABLE3_GROUP} users), {label}{synthetic}"
            write_text(out / "table3_variants.csv", tables.to_csv(*t3v))
            parts += ["", tables.table3_variant_markdown(*t3v, title3v, paper_numbers=paper)]

        figure_paths = figures.figure6_head_tail(results, f"Figure 6: HR@50 head vs tail items, {label}{synthetic}",
                                                 out / "figure6_head_tail")
        share = records[0].dataset.get("domain_interactions", {})
        total = sum(share.values()) or 1
        fig7 = figures.figure7_domains(results, {d: c / total for d, c in share.items()},
                                       f"Figure 7: per-domain gain of UniEmb, {label}{synthetic}", out / "figure7_domains")
        figure_paths += fig7 or []
        rows = budget.budget_rows(records)
        write_text(out / "training_budget.csv", tables.to_csv(budget.HEADER, rows))
        write_text(out / "noise.csv", tables.to_csv(noise.HEADER, noise_rows))
        parts += ["", *budget.budget_markdown(rows), *tables.absent_lines(results, not_run)]
        timing_rows, _ = timing.timing_rows(records, results_dir / suite)
        write_text(out / "timing.csv", tables.to_csv(timing.HEADER, timing_rows))
        parts += ["", *timing.timing_markdown(timing_rows)]
        figure_paths += budget.learning_curves(records, f"Learning curves (validation metric vs optimizer steps), "
                                               f"{label}{synthetic}", out / "learning_curves") or []
        parts += ["", "Figures: " + ", ".join(str(final / p.name) for p in figure_paths if p.suffix == ".png")]
        if suite_methods:
            missing = [m for m in suite_methods if m not in ran]
            not_run = coverage.not_run_lines(suite, suite_methods, ran, records[0].scale,
                                             coverage.device_methods(missing))
            if not_run:
                parts += ["", *not_run]

        transfer = None
        if (results_dir / TRANSFER_SUITE / "transfer").is_dir():  # C10/C11 come from the transfer suite
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
        floor = below_popularity(results, results_dir)
        claims = check_claims(results, ablation_rows, c12=c12, transfer=transfer, c9=c9_from_results(results_dir),
                              ablation_runs=ablation_runs, not_competent=floor)
        claim_lines = claim_table(claims, paper) + floor_lines(floor, results)
        write_text(out / "claims.md", f"# Claims check: {suite} on {label}{synthetic}\n\n"
                   + "\n".join([*header_lines(r.dataset for r in records), *claim_lines]) + "\n")
        parts += ["", "### Claims (C1..C12)", "", *claim_lines]

        prov = ["| method | seed | run key | MLflow run | manifest | fit s | eval s | code |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(records, key=lambda r: (r.method, r.seed)):
            prov.append(f"| {r.method} | {r.seed} | {r.run_key} | {r.mlflow_run_id or '-'} | {r.manifest_hash[:12]} | "
                        f"{r.timings.get('fit_s', '-')} | {r.timings.get('eval_s', '-')} | {r.code_version} |")
        versions = sorted({r.code_version for r in records})
        parts += ["", "### Provenance", "",
                  f"Built from {len(records)} stored run(s) made by code version(s) {', '.join(versions)}; "
                  f"report written by code version {code_version()} to `{suite}/{final.name}/`. "
                  + code_changes(versions), versions_line([r.machine for r in records]), "", *prov]
        text = "\n".join(parts) + "\n"
        write_text(out / "report.md", text)
        return text


def _absent_sequence_methods(results: list, not_run: list[str], suite_methods: list[str]) -> list[str]:
    """Lines naming the methods with a user encoder that have no next-item numbers (skipped, failed, not run)."""
    seq = {m for m in suite_methods + [r.method for r in results] if _has_user_encoder(m)}
    skipped = [m for m in results if m.method in seq and not m.has_next_item]
    names = {plain_name(m) for m in seq}
    return tables.absent_lines(skipped, [n for n in not_run if n in names])


def _ablation_runs(results: list) -> list:
    """The runs Table 3's deltas rest on: full UniEmbedding and its two ablations (C6's deciding runs)."""
    return [m for m in results if m.method in ("uniembedding", *tables.ABLATIONS.values())]


def _has_user_encoder(method: str) -> bool:
    try:
        return registry.get_method(method).supports_next_item()
    except BenchmarkError:
        return False
