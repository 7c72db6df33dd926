"""Fault injection: tracking outages, broken stores, corrupt caches, races, kills, hostile input.

Each test injects one fault on the tiny twin with the cheapest methods (popularity, random) and
checks the guarantee the README states: results are kept and final before tracking, corrupt
caches are named and recomputed, concurrent processes compute a run once, nothing is read or
written outside the data and results directories, and user errors are one line with exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.runner import RunRecord, execute_run, plan
from benchmark.tracking import Tracker

ROOT = Path(__file__).resolve().parents[1]
SUITE = "xmarket-matching"


@pytest.fixture(scope="module")
def tiny_inputs(tiny_data_dir: Path):
    from benchmark.inputs import prepare_inputs

    (cfg,) = plan(SUITE, scale="tiny", methods=["popularity"])
    return prepare_inputs(cfg.dataset, cfg.split, cfg.features, tiny_data_dir, cfg.scale, progress=False)


@pytest.fixture
def quick_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def _run(method: str, inputs, results: Path, tracker: Tracker | None) -> RunRecord:
    (cfg,) = plan(SUITE, scale="tiny", methods=[method])
    return execute_run(cfg, inputs, results, tracker, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_kept_not_logged(record: RunRecord, results: Path) -> None:
    folder = results / SUITE / record.run_key
    stored = json.loads((folder / "result.json").read_text())
    assert record.status == "done" and (folder / "ranks.npy").is_file() and (folder / "item_embeddings.npy").is_file()
    assert stored["tracking"]["status"] == "not logged" and stored["tracking"]["reason"]
    assert stored["metrics"]["all"]["HR@50"] == record.metrics["all"]["HR@50"]


# -- 1. results first, tracking second ------------------------------------------------------------


def test_refused_tracking_server_keeps_results_and_the_grid_goes_on(tiny_inputs, tmp_path, quick_http) -> None:
    tracker = Tracker(f"http://127.0.0.1:{_free_port()}", tmp_path)
    t0 = time.perf_counter()
    first = _run("popularity", tiny_inputs, tmp_path, tracker)
    second = _run("random", tiny_inputs, tmp_path, tracker)
    assert time.perf_counter() - t0 < 30
    for record in (first, second):
        _assert_kept_not_logged(record, tmp_path)
    assert tracker.down  # the second run did not wait for the dead server again


def test_hanging_tracking_server_times_out_in_seconds(tiny_inputs, tmp_path, quick_http) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # accepts connections (kernel backlog), never answers
    try:
        tracker = Tracker(f"http://127.0.0.1:{server.getsockname()[1]}", tmp_path)
        t0 = time.perf_counter()
        record = _run("popularity", tiny_inputs, tmp_path, tracker)
        assert time.perf_counter() - t0 < 30
        _assert_kept_not_logged(record, tmp_path)
    finally:
        server.close()


@pytest.mark.parametrize("damage", ["garbage", "directory"])
def test_corrupt_or_unopenable_sqlite_store_keeps_results(tiny_inputs, tmp_path, damage) -> None:
    db = tmp_path / "mlflow.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    else:
        db.mkdir()
    tracker = Tracker(f"sqlite:///{db}", tmp_path)
    record = _run("popularity", tiny_inputs, tmp_path, tracker)
    _assert_kept_not_logged(record, tmp_path)


def test_sync_logs_what_mlflow_lacks_once_and_closes_killed_runs(tiny_inputs, tmp_path, quick_http) -> None:
    from benchmark.sync import sync_results

    down = Tracker(f"http://127.0.0.1:{_free_port()}", tmp_path)
    records = [_run(m, tiny_inputs, tmp_path, down) for m in ("popularity", "random")]
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    # a process killed after creating its MLflow run left it RUNNING
    exp = tracker.experiment_id(SUITE)
    leftover = tracker.client.create_run(exp, tags={"run_key": records[0].run_key}).info.run_id
    counts = sync_results(tmp_path, tracker)
    assert counts["logged"] == 2 and counts["failed"] == 0
    assert tracker.client.get_run(leftover).info.status == "KILLED"
    again = sync_results(tmp_path, Tracker(tracker.uri, tmp_path))
    assert again["logged"] == 0 and again["already"] == 2
    for record in records:
        runs = tracker.runs_for_key(SUITE, record.run_key)
        assert sum(r.info.status == "FINISHED" for r in runs) == 1  # logged once, ever
        stored = RunRecord.read(tmp_path / SUITE / record.run_key)
        assert stored.tracking["status"] == "logged" and stored.mlflow_run_id == stored.tracking["run_id"]
        art = tmp_path / "mlartifacts" / SUITE / stored.mlflow_run_id / "artifacts"
        assert (art / "ranks.npy").is_file()  # artefacts under the current results dir


def test_every_result_records_the_machine(tiny_inputs, tmp_path) -> None:
    record = _run("random", tiny_inputs, tmp_path, None)
    machine = json.loads((tmp_path / SUITE / record.run_key / "result.json").read_text())["machine"]
    assert machine["cpu"] and isinstance(machine["isa"], list) and machine["libraries"]["numpy"] == np.__version__
    assert "blas" in machine and machine["python"]


# -- 2. concurrency and kills ---------------------------------------------------------------------


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


def test_two_processes_on_one_fresh_results_dir_compute_each_run_once(tiny_data_dir, tmp_path) -> None:
    results = tmp_path / "results"
    procs = [_cli("run", "--suite", SUITE, "--scale", "tiny", "--methods", "popularity,random",
                  "--data-dir", str(tiny_data_dir), "--results-dir", str(results),
                  "--reports-dir", str(tmp_path / f"reports{i}"), "--no-progress") for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    lines = [line for out, _ in outs for line in out.splitlines() if " seed 0: " in line]
    for method in ("popularity", "random"):
        mine = [line for line in lines if line.strip().startswith(method)]
        assert len(mine) == 2 and sum("finished earlier" in line for line in mine) == 1, mine
    tracker = Tracker(f"sqlite:///{results / 'mlflow.db'}", results)
    for folder in (results / SUITE).iterdir():
        assert not folder.name.startswith(".")
        runs = tracker.runs_for_key(SUITE, folder.name)
        assert [r.info.status for r in runs] == ["FINISHED"]


_KILLER = """
import os, signal, sys
from pathlib import Path
from benchmark import runner, sync, tracking
from benchmark.inputs import prepare_inputs
data, results, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "write":  # mid-way through writing the temporary result folder
    import benchmark.embeddings as emb
    emb.write_embeddings = die
elif where == "tracking":  # the folder is final, MLflow not called yet
    runner.log_result = die
elif where == "logging":  # the MLflow run exists (RUNNING), its metrics are being logged
    def half(self, **kw):
        exp = self.experiment_id(kw["experiment"])
        self.client.create_run(exp, tags=dict(kw["tags"]))
        die()
    tracking.Tracker.log_run = half
(cfg,) = runner.plan("xmarket-matching", scale="tiny", methods=["popularity"])
inputs = prepare_inputs(cfg.dataset, cfg.split, cfg.features, data, cfg.scale, progress=False)
tracker = tracking.Tracker("sqlite:///" + str(results / "mlflow.db"), results)
runner.execute_run(cfg, inputs, results, tracker, progress=False)
"""


@pytest.mark.parametrize("where", ["write", "tracking", "logging"])
def test_kill_9_at_each_write_step_loses_nothing_and_logs_once(tiny_data_dir, tiny_inputs, tmp_path, where) -> None:
    from benchmark.reporting.results import load_records
    from benchmark.sync import sync_results

    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(tiny_data_dir), str(results), where],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    suite_dir = results / SUITE
    if where == "write":
        assert [p.name[:5] for p in suite_dir.iterdir()] == [".tmp-"]  # only the dead writer's temp folder
        with pytest.raises(Exception, match="no finished runs"):
            load_records(results, SUITE)  # never read as a result
    tracker = Tracker(f"sqlite:///{results / 'mlflow.db'}", results)
    record = _run("popularity", tiny_inputs, results, tracker)  # the rerun (resume)
    assert [p.name for p in suite_dir.iterdir()] == [record.run_key]  # temp folders of the dead are gone
    sync_results(results, tracker)
    stored = RunRecord.read(suite_dir / record.run_key)
    assert stored.tracking["status"] == "logged"
    statuses = sorted(r.info.status for r in tracker.runs_for_key(SUITE, record.run_key))
    assert statuses == (["FINISHED", "KILLED"] if where == "logging" else ["FINISHED"])
