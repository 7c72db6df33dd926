"""Log finished result folders of every task to MLflow: right after a run, and later with ``sync``.

A result folder is complete before anything is sent to MLflow; it holds ``tracking.json`` (the
experiment, run name, params and tags to log) so logging is a pure function of the folder and can
be repeated at any time. The outcome is written back into result.json (``tracking`` and
``mlflow_run_id``), atomically. Sync takes each run's lock, so it never races a running grid.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.fsutil import atomic_write_text, file_lock
from benchmark.store.embeddings import EMBEDDINGS_FILE
from benchmark.store.records import LEGACY_RECORD_FILE, RESULT_FILE, read_record_dict, record_path
from benchmark.store.tracking import Tracker

log = logging.getLogger(__name__)

TRACKING_FILE = "tracking.json"
_NOT_LOGGED = (RESULT_FILE, LEGACY_RECORD_FILE, TRACKING_FILE)


def run_lock_path(results_dir: Path, suite: str, key: str) -> Path:
    """One lock file per run key, outside the suite folder (which readers list)."""
    return Path(results_dir) / ".locks" / f"{suite}-{key}.lock"


def write_curves(path: Path, curves: list[tuple[str, float, int]]) -> None:
    """``curves.csv`` (name, step, value), CSV-quoted: a metric name may hold a comma."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["name", "step", "value"])
        out.writerows([n, s, repr(float(v))] for n, v, s in curves)


def _curves(folder: Path) -> list[tuple[str, float, int]]:
    path = folder / "curves.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [(row["name"], float(row["value"]), int(row["step"])) for row in csv.DictReader(fh)]


def _matching_metrics(record: dict) -> dict:
    """Metrics of a matching run written before tracking.json carried them (read from its record)."""
    metrics = dict(record.get("metrics", {}))
    metrics.update({f"next_item/{group}": values for group, values in record.get("next_item_metrics", {}).items()})
    return metrics


def log_folder(tracker: Tracker, folder: Path, log_embeddings: bool = False) -> dict:
    """Log one finished folder of any task (idempotent per run key); write the outcome into its record.

    Everything logged comes from the folder: ``tracking.json`` (experiment, run name, params,
    tags, metrics), ``curves.csv`` and the files as artefacts (item embeddings only with
    ``log_embeddings``). Call with the run's lock held. Returns the updated record (a dict).
    """
    path = record_path(folder)
    record = read_record_dict(folder)  # one-line BenchmarkError when unreadable
    before = dict(record.get("tracking", {}))
    info = json.loads((folder / TRACKING_FILE).read_text())
    metrics = info.get("metrics") or _matching_metrics(record)
    artefacts = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_LOGGED
                       and (log_embeddings or p.name != EMBEDDINGS_FILE))
    run_id, reason = tracker.try_log_run(
        experiment=info["experiment"], run_name=info["run_name"], params=info["params"], tags=info["tags"],
        metrics=metrics, curves=_curves(folder), artefacts=artefacts,
    )
    if run_id is not None:
        record["mlflow_run_id"] = run_id
        record["tracking"] = {"status": "logged", "uri": tracker.uri, "run_id": run_id}
    else:
        record["tracking"] = {"status": "not logged", "uri": tracker.uri, "reason": reason}
    if record["tracking"] != before:
        stat = path.stat()
        atomic_write_text(path, json.dumps(record, indent=1, default=str))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # reports order runs by it
    return record


def finished_folders(suite_dir: Path) -> list[tuple[Path, str]]:
    """(folder, lock name) of every finished run of a suite, whatever its task."""
    out = [(p.parent, p.parent.name) for p in sorted(suite_dir.glob(f"*/{RESULT_FILE}"))]
    out += [(p.parent, f"transfer-{p.parent.name}") for p in sorted(suite_dir.glob(f"transfer/*/{RESULT_FILE}"))]
    out += [(p.parent, f"transfer-{p.parent.name}") for p in sorted(suite_dir.glob(f"transfer/*/{LEGACY_RECORD_FILE}"))
            if not (p.parent / RESULT_FILE).is_file()]
    return [(folder, lock) for folder, lock in out if not folder.name.startswith(".")]


def sync_results(results_dir: Path, tracker: Tracker, suite: str | None = None,
                 log_embeddings: bool = False) -> dict[str, int]:
    """Log every stored result MLflow lacks; close RUNNING leftovers. Returns counts by outcome."""
    counts = {"logged": 0, "already": 0, "failed": 0, "busy": 0, "no_tracking_info": 0, "unreadable": 0}
    results_dir = Path(results_dir)
    suites = [results_dir / suite] if suite else sorted(
        p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "mlartifacts")
    for suite_dir in suites:
        if not suite_dir.is_dir():
            raise BenchmarkError(f"no results for suite {suite_dir.name!r} under {results_dir}")
        for folder, lock_name in finished_folders(suite_dir):
            if not (folder / TRACKING_FILE).is_file():
                counts["no_tracking_info"] += 1
                continue
            with file_lock(run_lock_path(results_dir, suite_dir.name, lock_name), blocking=False) as got:
                if not got:
                    counts["busy"] += 1  # a live process is computing or logging it
                    continue
                try:
                    before = read_record_dict(folder).get("tracking", {})
                    was_logged = before.get("status") == "logged" and before.get("uri") == tracker.uri
                    record = log_folder(tracker, folder, log_embeddings)
                except BenchmarkError as exc:  # a truncated or corrupt record: named, never logged
                    log.warning("%s; not logged (rerun `run` to recompute it)", exc)
                    counts["unreadable"] += 1
                    continue
                if record["tracking"]["status"] != "logged":
                    counts["failed"] += 1
                    if tracker.down:
                        return counts
                elif was_logged and record.get("mlflow_run_id") == before.get("run_id"):
                    counts["already"] += 1
                else:
                    counts["logged"] += 1
    return counts
