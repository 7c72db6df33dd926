"""Failed runs: caught at the run boundary, recorded beside the results, retried by the next run.

One run that raises (a method bug, a library that changed under us, a worker that died) must not
end a grid of hours. Every task's run boundary (matching runs, ranking cells, transfer
conditions; here or in a Ray worker) catches the exception and calls :func:`record_failure`:
the full traceback goes to ``<suite dir>/.failed/<key>.log`` and a one-line record to
``<key>.json`` (both written atomically; no result folder is created, so nothing half-written
is left and the next ``run`` retries exactly the failed keys). A later success removes the
record. Readers skip dot-folders, so ``.failed/`` never looks like a result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmark.fsutil import atomic_write_text

T = TypeVar("T")

log = logging.getLogger(__name__)
FAILED_DIR = ".failed"


@dataclass
class Failure:
    """One failed run: what it was, why (one line), and where its full traceback is."""

    key: str
    label: str  # e.g. "transrec seed 0", "DIN + UAE seed 1", a transfer condition's label
    reason: str  # "ExceptionType: first line of the message"
    log: str  # absolute path of the traceback file
    meta: dict[str, Any] = field(default_factory=dict)  # task-specific fields (method, seed, ...)
    when: float = 0.0

    def line(self) -> str:
        return f"{self.label}: failed: {self.reason} (traceback: {self.log})"


def failed_line(f: Failure) -> str:
    """The grid's console line for a failed run."""
    return f"  {f.label}: FAILED - {f.reason} (traceback: {f.log})"


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters."""
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return msg if len(msg) <= 300 else msg[:297] + "..."


def failed_dir(suite_dir: Path) -> Path:
    return Path(suite_dir) / FAILED_DIR


def record_failure(suite_dir: Path, key: str, label: str, exc: BaseException | None = None, *,
                   reason: str | None = None, trace: str | None = None,
                   meta: dict[str, Any] | None = None) -> Failure:
    """Write ``<key>.log`` (the traceback) and ``<key>.json`` under ``suite_dir/.failed`` and return the record.

    ``exc`` is the exception caught here; a Ray worker's error arrives as ``reason`` + ``trace``.
    """
    folder = failed_dir(suite_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if exc is not None:
        reason = reason or one_line(exc)
        trace = trace or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log_path = (folder / f"{key}.log").resolve()
    failure = Failure(key=key, label=label, reason=reason or "unknown error", log=str(log_path),
                      meta=dict(meta or {}), when=time.time())
    atomic_write_text(log_path, f"{label} (key {key})\n{trace or failure.reason}\n")
    atomic_write_text(folder / f"{key}.json", json.dumps(asdict(failure), indent=1, default=str))
    return failure


def guarded(suite_dir: Path, key: str, label: str, work: Callable[[], T],
            meta: dict[str, Any] | None = None) -> T | Failure:
    """Run one unit of a grid at its boundary: its result (its old failure cleared), or its recorded Failure."""
    try:
        out = work()
    except Exception as exc:  # noqa: BLE001 - the run boundary: one failing run never stops the grid
        failure = record_failure(suite_dir, key, label, exc, meta=meta)
        log.error("%s", failure.line())
        return failure
    clear_failure(suite_dir, key)
    return out


def clear_failure(suite_dir: Path, key: str) -> None:
    """Forget a key's failure once it has succeeded (no-op when there is none)."""
    for suffix in (".json", ".log"):
        with contextlib.suppress(FileNotFoundError):
            (failed_dir(suite_dir) / f"{key}{suffix}").unlink()


def read_failures(suite_dir: Path, keys: set[str] | None = None) -> list[Failure]:
    """The failures recorded under ``suite_dir`` (only ``keys`` when given), oldest first; unreadable ones skipped."""
    folder = failed_dir(suite_dir)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if keys is not None and path.stem not in keys:
            continue
        try:
            out.append(Failure(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda f: f.when)


def summary(failures: list[Failure]) -> str:
    """One line for the end of a command: how many failed and which."""
    names = ", ".join(f.label for f in failures[:6]) + (", ..." if len(failures) > 6 else "")
    return f"{len(failures)} run(s) failed ({names}); their tracebacks are under {Path(failures[0].log).parent}"
