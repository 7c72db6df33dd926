"""Shared report writers: atomic files, report folders swapped in whole, and the one naming rule of every report folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmark import registry
from benchmark.config import load_suite_file
from benchmark.errors import BenchmarkError
from benchmark.fsutil import atomic_write_text, remove_dead_tmp_dirs

#: What report writers produce; any other file found in a report folder (a note, a bench log) is carried over.
REPORT_SUFFIXES = (".csv", ".tex", ".md", ".png", ".pdf", ".json")


def write_text(path: Path, text: str) -> Path:
    """Write one report file atomically (its folder created): a reader never sees half a table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def suite_method_list(suite: str) -> list[str] | None:
    try:
        return list(load_suite_file(registry.suite_path(suite))["methods"])
    except BenchmarkError:
        return None


def _suite_methods(suite: str) -> set[str] | None:
    methods = suite_method_list(suite)
    return None if methods is None else set(methods)


def report_dir(reports_dir: Path, suite: str, records: list) -> Path:
    """``reports/<suite>/<dataset>-<scale>/``; ``-subset`` when not all the suite's methods ran.

    Reports are keyed by what produced them, so a quick tiny or subset run never overwrites the
    default suite's committed report.
    """
    first = records[0]
    wanted = _suite_methods(suite)
    complete = wanted is None or wanted <= {r.method for r in records}
    return keyed_dir(reports_dir, suite, first.dataset.get("name", "data"), first.scale, complete)


def keyed_dir(reports_dir: Path, suite: str, dataset: str, scale: str, complete: bool = True) -> Path:
    """The one naming rule of every suite's report folder: ``<suite>/<dataset>-<scale>[-subset]``."""
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(dataset))
    return Path(reports_dir) / suite / f"{name}-{scale}{'' if complete else '-subset'}"


@contextlib.contextmanager
def staged_report(final: Path) -> Iterator[Path]:
    """A temporary sibling of the report folder ``final`` to write into, swapped in whole on success.

    A report killed half-way (kill -9, a full disk, an exception) leaves the previous report as it
    was, never new tables beside an older run's figures; its temporary folder (``.tmp-<name>-p<pid>-*``)
    is removed by the next report once its writer is dead. Files of the previous folder that no
    report writes (not REPORT_SUFFIXES, e.g. a bench log placed there) are carried over.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for prefix in (".tmp-", ".old-"):
        remove_dead_tmp_dirs(final.parent, prefix=f"{prefix}{final.name}-")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-p{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a swap


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``: the old folder is renamed aside first and deleted after."""
    old = None
    if final.exists():
        for path in final.iterdir():
            if path.is_file() and path.suffix not in REPORT_SUFFIXES and not (tmp / path.name).exists():
                shutil.copy2(path, tmp / path.name)
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-p{os.getpid()}-", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
