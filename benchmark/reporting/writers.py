"""Shared report writers: atomic files and the one naming rule of every report folder."""

from __future__ import annotations

from pathlib import Path

from benchmark import registry
from benchmark.config import load_suite_file
from benchmark.errors import BenchmarkError
from benchmark.fsutil import atomic_write_text


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
