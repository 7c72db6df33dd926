"""What the last grid of a suite cost as one job: its inputs stage and its runs, wall and CPU.

Per-run stages (fit, eval, next_item) live in each record's ``timings.stages``; the stages that
belong to no single run (data, split, features; the wall clock of the whole grid, which with
``--jobs`` > 1 is less than the sum of its runs) are kept here, one file per split manifest:
``results/<suite>/.timing/<manifest>.json``. Reports join the two into ``timing.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.fsutil import atomic_write_text

TIMING_DIR = ".timing"  # a dot-folder: never read as a result


def write_job_timing(suite_dir: Path, manifest_hash: str, figures: dict[str, Any]) -> None:
    """Keep the figures of the grid just run (atomically; the newest run of a manifest wins)."""
    path = Path(suite_dir) / TIMING_DIR / f"{manifest_hash[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(figures, indent=1, default=str))


def read_job_timing(suite_dir: Path, manifest_hash: str) -> dict[str, Any]:
    """The figures of the last grid on this manifest, or {} (none kept, or unreadable)."""
    path = Path(suite_dir) / TIMING_DIR / f"{manifest_hash[:16]}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
