"""``timing.csv``: what each stage of a suite cost (wall s, CPU s, peak RSS), and the total.

Rows: the inputs stage (data, split, features) and the grid's wall clock, from the job's figures
(benchmark/store/timing.py), then each run's fit / eval / next_item stages (its record's
``timings.stages``). Runs read back from earlier grids keep the figures of when they were computed.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.store.records import RunRecord
from benchmark.store.timing import read_job_timing

HEADER = ["stage", "method", "seed", "wall_s", "cpu_s", "peak_rss_mb"]


def timing_rows(records: list[RunRecord], suite_dir: Path) -> tuple[list[list[str]], dict[str, float]]:
    """(rows of timing.csv, totals): totals = inputs + the runs' stages (sequential sum) and the job's wall."""
    def row(stage: str, method: str, seed: str, fig: dict) -> list[str]:
        return [stage, method, seed, f"{fig.get('wall_s', 0):.1f}", f"{fig.get('cpu_s', 0):.1f}",
                "" if fig.get("peak_rss_mb") is None else f"{fig['peak_rss_mb']:.0f}"]

    rows: list[list[str]] = []
    job = read_job_timing(suite_dir, records[0].manifest_hash) if records else {}
    inputs = job.get("inputs") or {}
    if inputs:
        rows.append(row("inputs (data, split, features)", "", "", inputs))
    run_wall = run_cpu = 0.0
    for r in sorted((r for r in records if r.status == "done"), key=lambda r: (r.method, r.seed)):
        for stage, fig in (r.timings.get("stages") or {}).items():
            rows.append(row(stage, r.method, str(r.seed), fig))
            run_wall += float(fig.get("wall_s", 0))
            run_cpu += float(fig.get("cpu_s", 0))
    totals = {"inputs_wall_s": float(inputs.get("wall_s", 0)), "runs_wall_s": run_wall, "runs_cpu_s": run_cpu,
              "job_wall_s": float((job.get("runs") or {}).get("wall_s", 0)) + float(inputs.get("wall_s", 0))}
    rows.append(["total (inputs + every run's stages, one after another)", "", "",
                 f"{totals['inputs_wall_s'] + run_wall:.1f}", f"{float(inputs.get('cpu_s', 0)) + run_cpu:.1f}", ""])
    if job:
        rows.append([f"job wall clock (last grid: {job.get('computed', '?')} of {job.get('n_runs', '?')} run(s) "
                     f"computed, jobs {job.get('jobs', '?')})", "", "", f"{totals['job_wall_s']:.1f}", "", ""])
    return rows, totals


def timing_markdown(rows: list[list[str]]) -> list[str]:
    """A short section: the totals (the per-stage rows are in timing.csv)."""
    lines = ["## Timing (`timing.csv`: wall s, CPU s and peak RSS per stage of every run)", ""]
    lines += [f"- {r[0]}: {r[3]} s wall" + (f", {r[4]} s CPU" if r[4] else "") for r in rows
              if r[0].startswith(("inputs", "total", "job wall"))]
    return lines
