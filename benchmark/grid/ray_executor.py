"""One ``map`` for every grid: run a task function over items as Ray tasks (Ray schedules, places, retries).

Matching runs, ranking cells and transfer conditions all go through :func:`ray_map`; it knows
nothing about them. ``local_cpus`` starts a private local Ray (``run --jobs N``), otherwise
RAY_ADDRESS (or ``address``) names an existing cluster: workers then load the dataset, split and
features from the shared data directory caches and write to the shared results directory; point
``--tracking-uri`` (or MLFLOW_TRACKING_URI) at a shared MLflow server when the cluster spans
machines. A task that raises in spite of its own run boundary (a worker killed, out of memory)
comes back as its exception, so the caller records that one failure and the grid goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from benchmark import compat
from benchmark.grid.failures import one_line


def start_ray(address: str | None = None, local_cpus: int | None = None) -> None:
    """Connect to Ray once: a private local Ray with ``local_cpus`` CPUs, else RAY_ADDRESS / ``address``."""
    compat.quiet_ray_pkg_resources()  # here and, through the environment, in every worker
    import ray

    if not ray.is_initialized():
        if local_cpus is not None:
            # Ray starts its workers at nice 15 (raylet's worker_niceness): fine beside a cluster's
            # daemons, but on a user's own machine the grid would then yield to anything else
            # running. --jobs N is the foreground job: workers at the driver's priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address="local", num_cpus=int(local_cpus), include_dashboard=False,
                     ignore_reinit_error=True, logging_level="WARNING")
        else:
            ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                     ignore_reinit_error=True, logging_level="WARNING")


def ray_map(task: Callable[..., Any], calls: Sequence[tuple], *, local_cpus: int | None = None,
            address: str | None = None, cpus_per_task: float = 1.0,
            on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[task(*args) for args in calls]`` as Ray tasks, in the order of ``calls``.

    Each element is the task's return value or, when the task raised, its exception (never
    raised here). ``on_done(i, value)`` is called as each task finishes (for progress lines).
    """
    if not calls:
        return []
    start_ray(address, local_cpus)
    import ray

    remote = ray.remote(num_cpus=cpus_per_task, max_retries=1)(task)
    refs = [remote.remote(*args) for args in calls]
    index = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    waiting = list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        i = index[done[0]]
        try:
            out[i] = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - Ray's error for a task that died
            out[i] = exc
        if on_done is not None:
            on_done(i, out[i])
    return out


def remote_reason(exc: BaseException) -> str:
    """One line for a Ray task's error: its cause's type and message, not Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    return one_line(cause if isinstance(cause, BaseException) else exc)
