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
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.grid.plan import plan
from benchmark.store.records import RunRecord
from benchmark.store.tracking import ATTEMPTS, Tracker
from benchmark.tasks.matching.runner import execute_run

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


def _count_log_run(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of tracker.log_run (each is one attempt to reach the store), recorded in a list."""
    calls: list[int] = []
    real = tracker.log_run

    def counted(**kwargs):
        calls.append(1)
        return real(**kwargs)

    monkeypatch.setattr(tracker, "log_run", counted)
    return calls


def test_refused_tracking_server_keeps_results_and_the_grid_goes_on(tiny_inputs, tmp_path, quick_http,
                                                                    monkeypatch) -> None:
    tracker = Tracker(f"http://127.0.0.1:{_free_port()}", tmp_path)
    tries = _count_log_run(tracker, monkeypatch)
    first = _run("popularity", tiny_inputs, tmp_path, tracker)
    assert tracker.down and tries == []  # one probe per attempt found it refused: MLflow never called
    tried_first = len(tries)
    second = _run("random", tiny_inputs, tmp_path, tracker)
    for record in (first, second):
        _assert_kept_not_logged(record, tmp_path)
    assert len(tries) == tried_first  # the second run did not try the dead server again
    assert second.tracking["reason"].startswith("tracking unavailable earlier in this process")
    healed = _run("popularity", tiny_inputs, tmp_path, Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path))
    assert healed.timings["cached"] and healed.tracking["status"] == "logged"  # a rerun logs what was missed


def test_hanging_tracking_server_times_out_in_seconds(tiny_inputs, tmp_path, quick_http, monkeypatch) -> None:
    """A server that accepts connections and never answers costs ATTEMPTS probes of one timeout each
    (the README's budget), never MLflow's retried requests; the wait is not the run's printed time."""
    import urllib.request

    from benchmark.grid.engine import elapsed_text

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # accepts connections (kernel backlog), never answers
    try:
        probes: list[tuple[object, str]] = []  # (timeout passed, how the request ended)
        real_urlopen = urllib.request.urlopen

        def spied(*args, **kwargs):
            try:
                return real_urlopen(*args, **kwargs)
            except Exception as exc:
                probes.append((kwargs.get("timeout"), str(exc)))
                raise

        monkeypatch.setattr(urllib.request, "urlopen", spied)
        tracker = Tracker(f"http://127.0.0.1:{server.getsockname()[1]}", tmp_path)
        tries = _count_log_run(tracker, monkeypatch)
        record = _run("popularity", tiny_inputs, tmp_path, tracker)
        _assert_kept_not_logged(record, tmp_path)
        # ATTEMPTS probes, each with the short timeout (quick_http: 1 s) and ended by it; MLflow's own
        # client (several retried requests per call) was never reached. Seconds: scripts/bench_tracking_outage.py
        assert len(probes) == ATTEMPTS and all(timeout == 1 for timeout, _ in probes)
        assert all("timed out" in ended.lower() for _, ended in probes)
        assert tracker.down and "did not answer within 1 s" in tracker.down and tries == []
        waited = record.timings["tracking_s"]
        assert waited >= 1.0 and "waiting for MLflow" in elapsed_text(record, waited + 2.0)
        assert elapsed_text(record, waited + 2.0).startswith("2.0s")  # the run's own time, without the wait
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
    from benchmark.store.sync import sync_results

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
                  "--dataset", "xmarket-sim", "--data-dir", str(tiny_data_dir), "--results-dir", str(results),
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
        assert not folder.name.startswith(".tmp-")  # no temporary write left behind
        if folder.name.startswith("."):  # .timing (the job's figures), never a run
            continue
        runs = tracker.runs_for_key(SUITE, folder.name)
        assert [r.info.status for r in runs] == ["FINISHED"]


_KILLER = """
import os, signal, sys
from pathlib import Path
from benchmark.grid import engine, plan
from benchmark.store import sync, tracking
from benchmark.tasks.matching import runner
from benchmark.inputs import prepare_inputs
data, results, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "write":  # mid-way through writing the temporary result folder
    runner.write_embeddings = die
elif where == "tracking":  # the folder is final, MLflow not called yet
    engine.log_run = die
elif where == "logging":  # the MLflow run exists (RUNNING), its metrics are being logged
    def half(self, **kw):
        exp = self.experiment_id(kw["experiment"])
        self.client.create_run(exp, tags=dict(kw["tags"]))
        die()
    tracking.Tracker.log_run = half
(cfg,) = plan.plan("xmarket-matching", scale="tiny", methods=["popularity"])
inputs = prepare_inputs(cfg.dataset, cfg.split, cfg.features, data, cfg.scale, progress=False)
tracker = tracking.Tracker("sqlite:///" + str(results / "mlflow.db"), results)
runner.execute_run(cfg, inputs, results, tracker, progress=False)
"""


@pytest.mark.parametrize("where", ["write", "tracking", "logging"])
def test_kill_9_at_each_write_step_loses_nothing_and_logs_once(tiny_data_dir, tiny_inputs, tmp_path, where) -> None:
    from benchmark.reporting.results import load_records
    from benchmark.store.sync import sync_results

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


# -- 3. caches: checksummed, named, recomputed ----------------------------------------------------


def _flip_last_byte(path: Path, at: float = 1.0) -> None:
    data = bytearray(path.read_bytes())
    data[min(len(data) - 1, int(len(data) * at))] ^= 0x01  # inside an array payload: still well-formed
    path.write_bytes(bytes(data))


def test_a_bit_flipped_feature_cache_is_named_and_recomputed(tmp_path, caplog) -> None:
    from benchmark.features.cache import FeatureCache

    cache = FeatureCache(tmp_path)
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    vec_path = cache.save("text", "k1", vectors, None, {})
    np.testing.assert_array_equal(cache.load("text", "k1", 4, 3, False)[0], vectors)
    _flip_last_byte(vec_path)
    assert np.load(vec_path).shape == (4, 3)  # still a valid .npy, silently different values
    assert cache.load("text", "k1", 4, 3, False) is None
    assert str(vec_path) in caplog.text and "checksum" in caplog.text


def test_image_features_are_keyed_on_content_not_path_and_size(tmp_path) -> None:
    from benchmark.features.cache import fingerprint_images

    img = tmp_path / "a.png"
    img.write_bytes(b"\x89PNG-one")
    before = fingerprint_images([str(img), ""])
    time.sleep(0.01)
    img.write_bytes(b"\x89PNG-two")  # same path, same size, other content
    assert fingerprint_images([str(img), ""]) != before


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_parse_cache_is_named_and_rebuilt(tiny_data_dir, tmp_path, caplog, damage) -> None:
    from benchmark.data.sources import sim_dir
    from benchmark.data.xmarket import load_xmarket

    root = sim_dir(tiny_data_dir, "tiny", 0)
    first = load_xmarket(root, cache_dir=tmp_path, progress=False, name="xmarket-sim")
    (npz,) = tmp_path.glob("*.npz")
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    else:
        _flip_last_byte(npz)
    again = load_xmarket(root, cache_dir=tmp_path, progress=False, name="xmarket-sim")
    assert "from_cache" not in again.meta and str(npz) in caplog.text
    np.testing.assert_array_equal(again.interactions.item, first.interactions.item)
    assert "from_cache" in load_xmarket(root, cache_dir=tmp_path, progress=False, name="xmarket-sim").meta


def test_a_bit_flipped_split_cache_is_named_and_rebuilt(tiny_inputs, tmp_path, caplog) -> None:
    from benchmark.data.split import cached_split

    split = cached_split(tiny_inputs.dataset, tmp_path)
    (path,) = tmp_path.glob("split-*.npz")
    _flip_last_byte(path, at=0.5)
    again = cached_split(tiny_inputs.dataset, tmp_path)
    assert again.manifest_hash == split.manifest_hash and str(path) in caplog.text


# -- 4. no reads or writes outside the data --------------------------------------------------------


def test_image_urls_outside_the_dataset_or_to_local_hosts_are_refused(tmp_path) -> None:
    from benchmark.data.images import MISSING_TSV, fetch_images, url_refusal
    from benchmark.data.model import Items

    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG private")
    secret.chmod(0o600)
    inside = data / "ok.png"
    from PIL import Image

    Image.new("RGB", (2, 2)).save(inside)
    assert url_refusal(inside.as_uri(), data) == ""
    assert url_refusal("http://93.184.216.34/x.jpg", data) == ""  # a public address
    hostile = [secret.as_uri(), (data / ".." / "secret.png").resolve().as_uri(), "file:///etc/passwd",
               "http://127.0.0.1:8080/x.jpg", "http://localhost/x.jpg", "http://10.1.2.3/x.jpg",
               "http://169.254.169.254/latest/meta-data", "http://[::1]/x.jpg", "ftp://example.com/x.jpg"]
    for url in hostile:
        assert url_refusal(url, data), url
    items = Items(domains=("A",), source_id=np.array([f"H{i}" for i in range(len(hostile))], dtype=object),
                  domain=np.zeros(len(hostile), dtype=np.int16), image_url=np.array(hostile, dtype=object))
    out = fetch_images(items, data / "cache", progress=False, allowed_root=data)
    assert (out.image_path == "").all()
    reasons = [r.split("\t")[2] for r in (data / "cache" / MISSING_TSV).read_text().splitlines()[1:]]
    assert len(reasons) == len(hostile) and all(r.startswith(("refused", "unsupported")) for r in reasons)
    assert not [p for p in (data / "cache").iterdir() if p.name != MISSING_TSV]  # nothing copied in


def _main(capsys, *argv: str) -> tuple[int, str]:
    from benchmark.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().err


def test_a_suite_name_with_path_parts_is_refused(tmp_path, capsys) -> None:
    suite = tmp_path / "evil.yaml"
    suite.write_text("name: ../../../outside\nmethods: [random]\ndataset: {name: xmarket-sim}\n")
    code, err = _main(capsys, "run", "--suite", str(suite), "--results-dir", str(tmp_path / "r"),
                      "--data-dir", str(tmp_path / "d"), "--no-progress")
    assert code == 2 and "not a valid name" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "outside").exists() and not (tmp_path / "r").exists()


def test_fetch_refuses_unverified_files_and_foreign_redirects(tmp_path, capsys) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmark.data.fetch import download
    from benchmark.errors import DataError

    code, err = _main(capsys, "data", "fetch", "xmarket", "--data-dir", str(tmp_path / "x"))
    assert code == 2 and "no sha256" in err and "--allow-unverified" in err
    assert not (tmp_path / "x").exists()  # nothing fetched

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{self.server.server_address[1]}/other")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DataError, match="redirects to another host"):
            download(f"http://127.0.0.1:{httpd.server_address[1]}/f.gz", tmp_path / "f.gz", progress=False)
    finally:
        httpd.shutdown()
    assert not (tmp_path / "f.gz").exists()


# -- 5. one-line errors, exit 2, before any data is loaded -----------------------------------------


@pytest.mark.parametrize("setting, message", [
    ("item2vec.epochs=-3", "item2vec.epochs=-3: must be at least 1"),
    ("evaluation.block_queries=0", "evaluation.block_queries=0 is out of range"),
    ("split.test_user_frac=1.5", "out of range"),
])
def test_out_of_range_settings_fail_before_any_data(tmp_path, capsys, setting, message) -> None:
    code, err = _main(capsys, "run", "--suite", SUITE, "--methods", "item2vec", "--set", setting,
                      "--data-dir", str(tmp_path / "none"), "--results-dir", str(tmp_path / "r"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()  # no data generated or loaded


def test_hostile_metadata_lines_are_one_line_errors_with_their_line(tmp_path) -> None:
    import gzip

    from benchmark.data.xmarket_meta import _parse_meta_line, read_metadata
    from benchmark.data.xmarket_ratings import read_ratings
    from benchmark.errors import DataError

    for line in ('{"asin": "A", "price": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(DataError, match=r"meta.json.gz:7: malformed metadata line"):
            _parse_meta_line(Path("meta.json.gz"), line, 7)
    meta = tmp_path / "metadata_us_Books.json.gz"
    with gzip.open(meta, "wb") as f:
        f.write(b'{"asin": "A1", "title": "x"}\n' * 500 + b'{"asin": "A2", "title": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"metadata_us_Books.json.gz:501: not UTF-8"):
        read_metadata(meta, {"A1", "A2"}, "Books", progress=False)
    ratings = tmp_path / "ratings_us_Books.txt.gz"
    with gzip.open(ratings, "wb") as f:
        f.write(b"U1 A1 5.0 2014-03-02\n" * 3 + b"U\xff2 A1 5.0 2014-03-02\n")
    with pytest.raises(DataError, match=r"ratings_us_Books.txt.gz:4: not UTF-8"):
        read_ratings(ratings, "Books", progress=False)


def test_an_unwritable_data_dir_is_a_one_line_error(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = _main(capsys, "run", "--suite", SUITE, "--scale", "tiny", "--methods", "random",
                      "--dataset", "xmarket-sim", "--data-dir", str(blocker / "data"),
                      "--results-dir", str(tmp_path / "r"), "--no-progress")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_missing_real_data_fails_unless_the_twin_is_asked_for(tiny_data_dir, tmp_path, capsys) -> None:
    import shutil

    from benchmark.data.sources import sim_dir

    partial = tmp_path / "real"
    shutil.copytree(sim_dir(tiny_data_dir, "tiny", 0) / "us" / "Books", partial / "us" / "Books")
    code, err = _main(capsys, "run", "--suite", SUITE, "--scale", "tiny", "--methods", "random",
                      "--data-dir", str(partial), "--results-dir", str(tmp_path / "r"), "--no-progress")
    assert code == 2 and "not for us/Electronics, us/Cell_Phones_and_Accessories" in err
    code, err = _main(capsys, "run", "--suite", SUITE, "--scale", "tiny", "--methods", "random",
                      "--data-dir", str(tmp_path / "empty"), "--results-dir", str(tmp_path / "r"), "--no-progress")
    assert code == 2 and "--dataset xmarket-sim" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / SUITE).exists()
