"""How many runs of a grid at once (``--jobs``), and each run's torch thread budget.

One rule for every task: ``auto`` = min(cores, runs still to compute); each run keeps RUN_THREADS
torch thread(s) whatever the jobs, so a run key gives the same bits alone or in a batch.
"""

from __future__ import annotations

import logging
import os

from benchmark.errors import ConfigError

log = logging.getLogger(__name__)
#: torch CPU threads per run, for every --jobs value. Not cores // jobs: SASRec's tiny-twin item
#: embeddings differ in the last bits between 1 and 2 threads (same seed, same key), and on the
#: shared 2-core machine 2 threads per run were several times slower (OpenMP waits on busy cores).
RUN_THREADS = 1


def machine_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int | str) -> int | str:
    """``--jobs``: ``auto`` or a positive integer; more than the machine's cores is clamped with a warning.

    Checked before any work; ``auto`` is resolved by :func:`effective_jobs` once the pending runs are known.
    """
    if isinstance(jobs, str):
        if jobs.strip().lower() == "auto":
            return "auto"
        try:
            jobs = int(jobs)
        except ValueError:
            raise ConfigError(f"--jobs must be a positive integer or auto, got {jobs!r}") from None
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a positive integer or auto, got {jobs!r}")
    cores = machine_cores()
    if jobs > cores:
        log.warning("--jobs %d is more than this machine's %d cores: clamped to %d job(s) of 1 thread each",
                    jobs, cores, cores)
        return cores
    return jobs


def effective_jobs(jobs: int | str, pending: int) -> tuple[int, int]:
    """(runs at once, torch threads per run) for a checked ``jobs`` and ``pending`` runs to compute.

    ``auto`` = min(cores, pending), at least 1. The per-run budget is RUN_THREADS whatever the
    jobs: ``auto`` depends on how many runs are pending, and a run key must give the same bits
    whether it ran in a batch or alone.
    """
    cores = machine_cores()
    n = min(cores, max(int(pending), 1)) if jobs == "auto" else int(check_jobs(jobs))
    return n, RUN_THREADS
