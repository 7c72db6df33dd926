"""One engine for a keyed run of any task: skip when finished, lock per key, compute into a
temporary folder renamed whole (with checksums of its result files), then log it to MLflow.

A task only says what a run computes (``produce(tmp)`` writes the result files, ``tracking.json``
and ``result.json`` into ``tmp``); the engine does the rest the same way for matching runs,
ranking cells and transfer conditions:

- **Resume**: a folder with a readable record is finished and read back (``cached``); one a
  tracking outage (or a kill) left unlogged is logged now, if no live process holds its lock.
- **Verified on read**: an unreadable record (truncated, corrupt) is named in one warning and the
  run is computed again, never trusted and never a crash.
- **Concurrency**: one lock per key (``results/.locks``), so processes sharing a results dir
  compute each key once; a dead writer's temporary folder is removed under the lock.
- **Results first, tracking second**: MLflow is called only after the folder is in place; a
  tracking failure is written into the record ("not logged") and only warns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.fsutil import atomic_write_dir, file_lock, remove_stale_tmp, verify_folder
from benchmark.store.records import Record, has_record, read_record
from benchmark.store.sync import TRACKING_FILE, log_folder, run_lock_path
from benchmark.store.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class KeyedRun:
    """Where one keyed run lives: its folder (``results/<suite>/[...]/<key>``) and its lock."""

    results_dir: Path
    suite: str
    key: str
    folder: Path
    lock_name: str = ""  # default: the key

    @property
    def lock(self) -> Path:
        return run_lock_path(self.results_dir, self.suite, self.lock_name or self.key)


def finished(folder: Path) -> Record | None:
    """The record of a finished folder, or None (absent; or unreadable: warned, to be recomputed)."""
    if not has_record(folder):
        return None
    try:
        record = read_record(folder)
    except BenchmarkError as exc:
        log.warning("%s; treated as not finished (it is computed again)", exc)
        return None
    damaged = verify_folder(folder)  # ranks, scores, embeddings against the sha256 written with them
    if damaged is not None:
        log.warning("%s; treated as not finished (it is computed again)", damaged)
        return None
    return record


def run_keyed(run: KeyedRun, produce: Callable[[Path], None], tracker: Tracker | None,
              log_embeddings: bool = False) -> tuple[Record, bool]:
    """Compute ``run`` once (or read it back); returns (record, cached).

    ``produce(tmp)`` computes and writes the run's complete folder contents into ``tmp``; its
    exceptions propagate (the task's run boundary, :func:`benchmark.grid.failures.guarded`,
    records them) and leave no folder behind.
    """
    record = finished(run.folder)
    if record is not None:
        return _resumed(run, record, tracker, log_embeddings), True
    with file_lock(run.lock):  # each key is computed once, whatever shares the results dir
        record = finished(run.folder)
        if record is not None:  # another process finished it while we waited
            return _resumed(run, record, None, log_embeddings), True
        remove_stale_tmp(run.folder)  # we hold the key's lock: a leftover's writer is dead
        atomic_write_dir(run.folder, produce, checksums=True)
        if tracker is None:
            return read_record(run.folder), False
        t0 = time.perf_counter()
        record = log_run(tracker, run.folder, log_embeddings)
        # in memory only: a caller's printed run time leaves out the wait for the tracker
        record.timings = {**record.timings, "tracking_s": round(time.perf_counter() - t0, 3)}
        return record, False


def log_run(tracker: Tracker, folder: Path, log_embeddings: bool = False) -> Record:
    """Log a finished folder to MLflow (the key's lock held); warn, never raise, when it is not logged."""
    logged = log_folder(tracker, folder, log_embeddings)
    if logged["tracking"]["status"] != "logged":
        log.warning("%s: not logged to MLflow (%s); its results are kept", folder.name,
                    logged["tracking"].get("reason"))
    return read_record(folder)


def _resumed(run: KeyedRun, record: Record, tracker: Tracker | None, log_embeddings: bool) -> Record:
    unlogged = record.tracking.get("status") != "logged" and (run.folder / TRACKING_FILE).is_file()
    if unlogged and tracker is not None and tracker.down is None:
        with file_lock(run.lock, blocking=False) as mine:
            if mine:  # else a live process is still computing or logging it
                record = log_run(tracker, run.folder, log_embeddings)
    record.timings = {**record.timings, "cached": True}
    return record


def elapsed_text(record: Record, took: float | None) -> str:
    """How long a run took, for its printed line: "finished earlier", or its time without the wait
    for MLflow (shown apart when it was 1 s or more)."""
    if record.timings.get("cached"):
        return "finished earlier"
    if took is None:
        return f"fit {record.timings.get('fit_s', 0):.1f}s"
    waited = float(record.timings.get("tracking_s", 0.0))
    return f"{took - waited:.1f}s" + (f", +{waited:.1f}s waiting for MLflow" if waited >= 1.0 else "")
