"""timing.csv: each stage's wall/CPU/peak RSS, the inputs stage and the job's wall clock (issue "Speed" 1)."""

from __future__ import annotations

import numpy as np

from benchmark.machine import StageClock, peak_rss_mb
from benchmark.reporting.timing import timing_rows
from benchmark.store.records import RunRecord
from benchmark.store.timing import read_job_timing, write_job_timing


def test_a_stage_clock_measures_each_stage_and_its_own_peak(tmp_path) -> None:
    clock = StageClock()
    big = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB touched in the first stage only, freed within it
    big.sum()
    del big
    first = clock.lap("first")
    second = clock.lap("second")
    assert set(clock.stages) == {"first", "second"} and first["wall_s"] >= 0 and first["cpu_s"] >= 0
    assert first["peak_rss_mb"] >= second["peak_rss_mb"] + 32  # the peak was reset between stages
    assert peak_rss_mb() > 0


def test_timing_rows_join_the_job_and_every_run(tmp_path) -> None:
    def record(method: str, fit: float) -> RunRecord:
        return RunRecord(run_key=method, suite="s", method=method, display=method, seed=0, scale="tiny",
                         manifest_hash="m" * 16, timings={"stages": {
                             "fit": {"wall_s": fit, "cpu_s": fit / 2, "peak_rss_mb": 100.0},
                             "eval": {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mb": 90.0}}})

    write_job_timing(tmp_path, "m" * 16, {"inputs": {"wall_s": 5.0, "cpu_s": 4.0, "peak_rss_mb": 50.0},
                                          "runs": {"wall_s": 20.0}, "computed": 2, "n_runs": 2, "jobs": 2})
    assert read_job_timing(tmp_path, "m" * 16)["computed"] == 2
    rows, totals = timing_rows([record("a", 10.0), record("b", 6.0)], tmp_path)
    assert rows[0][0].startswith("inputs") and sorted(r[0] + r[1] for r in rows[1:5]) == ["evala", "evalb", "fita", "fitb"]
    assert totals["runs_wall_s"] == 18.0 and totals["runs_cpu_s"] == 10.0
    assert totals["job_wall_s"] == 25.0  # inputs + the grid's own wall clock
    assert rows[-2][3] == "23.0" and rows[-1][3] == "25.0"  # the sum of stages, then the job


def test_a_run_records_its_stages(tiny_suite_run) -> None:
    run, _, _ = tiny_suite_run
    done = [r for r in run.records if r.status == "done"]
    assert done and all({"fit", "eval"} <= set(r.timings.get("stages", {})) for r in done)
    for r in done:
        assert r.timings["fit_s"] == r.timings["stages"]["fit"]["wall_s"]
