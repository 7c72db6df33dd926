"""``run`` and ``report`` for every task: one options object in, a report and the failures out.

A suite declares its task (``registry.suite_task``): matching (Table 1, both protocols),
ranking (Table 4 on stored embeddings) or transfer (Tables 6-9). Each task's entry reads the
same :class:`~benchmark.options.RunOptions`, so ``--dataset``, ``--domains``, ``--data-dir``,
``--set``, ``--allow-extra-methods``, ``--log-embeddings``, ``--jobs`` and ``--executor`` reach
all three; the CLI has no per-task branch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark import registry
from benchmark.config import load_suite_file
from benchmark.errors import ConfigError
from benchmark.grid.failures import Failure, read_failures
from benchmark.options import RunOptions
from benchmark.reporting.matching import write_suite_reports
from benchmark.reporting.ranking import write_ranking_reports
from benchmark.reporting.results import load_records
from benchmark.reporting.transfer import load_transfer, write_transfer_reports
from benchmark.reporting.writers import keyed_dir, report_dir
from benchmark.store.records import has_record
from benchmark.tasks.matching.runner import run_suite
from benchmark.tasks.ranking.suite import load_ranking_suite, run_ranking_suite
from benchmark.tasks.transfer.grid import run_transfer

log = logging.getLogger(__name__)
Echo = Callable[[str], None]


@dataclass
class Outcome:
    """What a ``run`` leaves: the report it wrote (None if nothing finished), a summary line, the failures."""

    report: Path | None
    line: str
    failures: list[Failure] = field(default_factory=list)


def suite_name(suite: str) -> str:
    """The name a suite file declares (its results folder), for a suite name or a suite file."""
    return str(load_suite_file(registry.suite_path(suite))["name"])


def run(opts: RunOptions, echo: Echo = print) -> Outcome:
    """Run (or resume) the suite's grid, write its report, return the outcome."""
    task = registry.suite_task(opts.suite)
    if task != "ranking" and (opts.models or opts.fit_missing):
        raise ConfigError("--models and --fit-missing apply to ranking suites only")
    return RUNNERS[task](opts, echo)


def report(opts: RunOptions) -> str:
    """Rebuild the suite's report from stored results only; return its Markdown."""
    return REPORTERS[registry.suite_task(opts.suite)](opts)


# ----------------------------------------------------------------------------- matching


def _run_matching(opts: RunOptions, echo: Echo) -> Outcome:
    result = run_suite(
        opts.suite, scale=opts.scale, methods=opts.methods, seeds=opts.seeds, overrides=opts.overrides,
        allow_extra_methods=opts.allow_extra_methods, data_dir=opts.data_dir, results_dir=opts.results_dir,
        tracking_uri=opts.tracking_uri, executor=opts.executor, progress=opts.progress,
        log_embeddings=opts.log_embeddings, jobs=opts.jobs, echo=echo, twin_fallback=opts.twin_fallback)
    keys = {r.run_key for r in result.records}
    failed = {r.run_key for r in result.records if r.status == "failed"}
    write_suite_reports(result.suite, opts.results_dir, opts.reports_dir, keys=keys)
    out = report_dir(opts.reports_dir, result.suite, load_records(opts.results_dir, result.suite, keys)) / "report.md"
    done = sum(r.status == "done" for r in result.records)
    line = (f"{done} of {len(result.records)} run(s) finished ({len(result.records) - done - len(failed)} skipped, "
            f"{len(failed)} failed); report: {out}")
    return Outcome(out, line, read_failures(opts.results_dir / result.suite, failed))


def _report_matching(opts: RunOptions) -> str:
    return write_suite_reports(suite_name(opts.suite), opts.results_dir, opts.reports_dir, dataset=opts.dataset,
                               scale=opts.scale)


# ----------------------------------------------------------------------------- ranking


def _run_ranking(opts: RunOptions, echo: Echo) -> Outcome:
    data_overrides, own = opts.split_overrides()
    ranking = run_ranking_suite(
        opts.suite, scale=opts.scale, models=opts.models, methods=opts.methods, seeds=opts.seeds, overrides=own,
        data_dir=opts.data_dir, results_dir=opts.results_dir, tracking_uri=opts.tracking_uri,
        fit_missing=opts.fit_missing, jobs=opts.jobs, executor=opts.executor, progress=opts.progress, echo=echo,
        matching_overrides=data_overrides, twin_fallback=opts.twin_fallback,
        allow_extra_methods=opts.allow_extra_methods, log_embeddings=opts.log_embeddings)
    if not ranking.records:
        return Outcome(None, "no cell finished; no report written", ranking.failures)
    write_ranking_reports(ranking.suite, opts.results_dir, opts.reports_dir, keys=ranking.keys)
    first = ranking.records[0]
    out = keyed_dir(opts.reports_dir, ranking.suite, first.dataset.get("name", "data"), first.scale) / "report.md"
    return Outcome(out, f"{len(ranking.records)} cell(s) on {first.dataset.get('label', '?')}; report: {out}",
                   ranking.failures)


def _report_ranking(opts: RunOptions) -> str:
    name = str(load_ranking_suite(opts.suite)["name"])  # a ranking suite file is not a matching suite file
    return write_ranking_reports(name, opts.results_dir, opts.reports_dir, dataset=opts.dataset,
                                 scale=opts.scale)


# ----------------------------------------------------------------------------- transfer


def _run_transfer(opts: RunOptions, echo: Echo) -> Outcome:
    if opts.log_embeddings:
        echo("  --log-embeddings: transfer conditions store ranks, not item embeddings; nothing more to log")
    started = time.time()
    folder = run_transfer(opts.suite, scale=opts.scale, methods=opts.methods, seeds=opts.seeds,
                          overrides=opts.overrides, data_dir=opts.data_dir, results_dir=opts.results_dir,
                          tracking_uri=opts.tracking_uri, jobs=opts.jobs, executor=opts.executor,
                          progress=opts.progress, echo=echo, twin_fallback=opts.twin_fallback,
                          allow_extra_methods=opts.allow_extra_methods)
    failures = [f for f in read_failures(folder) if f.when >= started and not has_record(folder / f.key)]
    if not any(has_record(p) for p in folder.iterdir() if p.is_dir()):
        return Outcome(None, "no condition finished; no report written", failures)
    name = suite_name(opts.suite)
    write_transfer_reports(name, folder, opts.reports_dir)
    first = load_transfer(folder)[0]
    dataset = first["dataset"].get("name") or first["dataset"]["label"].split()[0]
    out = keyed_dir(opts.reports_dir, name, dataset, first["scale"]) / "report.md"
    return Outcome(out, f"transfer conditions on {first['dataset']['label']}; report: {out}", failures)


def _report_transfer(opts: RunOptions) -> str:
    name = suite_name(opts.suite)
    return write_transfer_reports(name, opts.results_dir / name / "transfer", opts.reports_dir, dataset=opts.dataset,
                                  scale=opts.scale)


RUNNERS: dict[str, Callable[[RunOptions, Echo], Outcome]] = {
    "matching": _run_matching, "ranking": _run_ranking, "transfer": _run_transfer}
REPORTERS: dict[str, Callable[[RunOptions], str]] = {
    "matching": _report_matching, "ranking": _report_ranking, "transfer": _report_transfer}
