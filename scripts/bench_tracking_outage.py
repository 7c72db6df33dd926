"""What an unreachable MLflow server costs a grid: seconds per run against no tracking, same process.

Usage:
    PYTHONPATH=. python scripts/bench_tracking_outage.py [--data-dir DIR] [--runs 3]

The README promises "results first, tracking second": MLflow is tried briefly (5 s connect/read
timeout, one retry, two attempts; MLFLOW_HTTP_REQUEST_TIMEOUT / MLFLOW_HTTP_REQUEST_MAX_RETRIES
override) and after one failure the rest of the grid does not wait for the tracker again. This
runs the same ``--runs`` cheap runs (popularity, random over seeds; tiny twin, xmarket-matching)
with a fresh results dir per condition:

- ``none``: no tracker (the baseline, measured first and last; the mean is used);
- ``sqlite``: the default local store;
- ``refused``: a port nobody listens on;
- ``hanging``: a socket that accepts connections and never answers.

It prints each run's seconds, its ratio to the baseline's same run, and the bound the settings
imply for the first failing run. Expected: ``refused`` and ``hanging`` cost extra only on their
first run (within the bound), every later run ~1x. Prints figures; not a test (the behaviour is
checked in tests/test_faults.py without a clock).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

METHODS = ("popularity", "random")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="where the tiny twin is (generated if absent)")
    ap.add_argument("--runs", type=int, default=3, help="runs per condition (cheap methods, then seeds)")
    args = ap.parse_args()

    from benchmark.grid.plan import plan
    from benchmark.inputs import prepare_inputs
    from benchmark.store.tracking import ATTEMPTS, QUICK_HTTP, Tracker
    from benchmark.tasks.matching.runner import execute_run

    for key, value in QUICK_HTTP.items():
        os.environ.setdefault(key, value)
    timeout = float(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    retries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    backoff = float(os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])

    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    data_dir = args.data_dir or tmp / "data"
    runs = plan("xmarket-matching", scale="tiny", methods=list(METHODS), seeds=list(range(args.runs)))
    runs = sorted(runs, key=lambda r: r.seed)[: args.runs]  # distinct run keys: each is computed
    inputs = prepare_inputs(runs[0].dataset, runs[0].split, runs[0].features, data_dir, "tiny", progress=False)

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)  # the kernel accepts, nobody answers

    def condition(name: str) -> list[float]:
        results = tmp / f"results-{name}-{time.monotonic_ns()}"
        uri = {"none": None, "sqlite": f"sqlite:///{results / 'mlflow.db'}",
               "refused": f"http://127.0.0.1:{_free_port()}",
               "hanging": f"http://127.0.0.1:{hanging.getsockname()[1]}"}[name]
        tracker = Tracker(uri, results) if uri else None
        seconds = []
        for run in runs:
            t0 = time.perf_counter()
            record = execute_run(run, inputs, results, tracker, progress=False)
            seconds.append(time.perf_counter() - t0)
            assert record.status == "done", record.reason
        return seconds

    try:
        first = condition("none")
        measured = {name: condition(name) for name in ("sqlite", "refused", "hanging")}
        last = condition("none")
    finally:
        hanging.close()
        shutil.rmtree(tmp, ignore_errors=True)
    base = [(a + b) / 2 for a, b in zip(first, last, strict=True)]
    # per attempt: (1 + retries) requests, each up to the timeout (connect or read), plus backoff;
    # our own 1 s pause between attempts
    bound = ATTEMPTS * ((1 + retries) * timeout + backoff * sum(2**k for k in range(retries))) + (ATTEMPTS - 1)
    print(f"MLflow HTTP timeout {timeout:g} s, {retries} retr{'y' if retries == 1 else 'ies'}, "
          f"{ATTEMPTS} attempts: a first failing run may cost up to ~{bound:.0f} s extra")
    print(f"{'condition':10s}" + "".join(f"{f'run {i + 1}: s, x base':>22s}" for i in range(len(runs)))
          + f"{'extra s, all runs':>20s}")
    print(f"{'none':10s}" + "".join(f"{b:13.2f} {1:6.2f}x" for b in base) + f"{0:20.2f}")
    for name, secs in measured.items():
        print(f"{name:10s}" + "".join(f"{s:13.2f} {s / b:6.2f}x" for s, b in zip(secs, base, strict=True))
              + f"{sum(secs) - sum(base):20.2f}")
    print("baseline spread (first vs last pass): "
          + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(first, last, strict=True)))


if __name__ == "__main__":
    main()
