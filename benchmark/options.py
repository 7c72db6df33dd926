"""One options object for ``run`` and ``report``, whatever the suite's task.

The CLI builds it once; every task (matching, ranking, transfer) reads the same fields, so an
option given on the command line reaches every task (``--dataset``/``--domains`` arrive folded
into ``overrides`` as ``dataset.*`` settings, exactly as ``--set`` would write them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    """What a user asked for; defaults are the CLI's."""

    suite: str
    scale: str | None = None
    methods: list[str] | None = None
    seeds: list[int] | None = None
    overrides: tuple[str, ...] = ()  # KEY=VALUE, --dataset/--domains included
    allow_extra_methods: bool = False
    data_dir: Path = Path("data")
    #: False when the user named a data directory: then missing real files are an error, never the twin
    twin_fallback: bool = True
    results_dir: Path = Path("results")
    reports_dir: Path = Path("reports")
    tracking_uri: str | None = None
    executor: str = "local"
    jobs: int | str = 1
    progress: bool = True
    log_embeddings: bool = False
    models: list[str] | None = None  # ranking suites: the ranking models
    fit_missing: bool = False  # ranking suites: run the matching runs whose embeddings are missing first
    dataset: str | None = None  # report: the runs on this dataset (run: folded into overrides)

    def split_overrides(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(data overrides: ``dataset.*``/``split.*``/``features.*``, the rest) for tasks built on a matching suite."""
        data = tuple(o for o in self.overrides if o.split("=", 1)[0].split(".", 1)[0] in DATA_SECTIONS)
        return data, tuple(o for o in self.overrides if o not in data)


#: Settings of a matching suite that decide the data a downstream task (ranking) reads.
DATA_SECTIONS = ("dataset", "split", "features")
