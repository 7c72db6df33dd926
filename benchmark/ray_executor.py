"""Run the grid on a Ray cluster: each run is one Ray task (Ray schedules, places and retries).

Workers load the dataset, split and features from the shared data directory caches and write
their result folders to the shared results directory; point ``--tracking-uri`` (or
MLFLOW_TRACKING_URI) at a shared MLflow server when the cluster spans machines.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from benchmark import compat
from benchmark.config import RunConfig
from benchmark.failures import one_line
from benchmark.progress import configure_logging
from benchmark.runner import RunRecord, execute_run, fail_run


def _remote_run(run: dict, key: str, data_dir: str, results_dir: str, tracking_uri: str,
                log_embeddings: bool = False, workers: int = 1, features: dict | None = None) -> dict:
    from benchmark.inputs import prepare_inputs
    from benchmark.tracking import Tracker

    configure_logging()
    cfg = RunConfig(**run)
    try:  # features: what the whole grid reads (inputs.features_needed), one cached copy per worker
        inputs = prepare_inputs(cfg.dataset, cfg.split, features or cfg.features, Path(data_dir), cfg.scale,
                                progress=False)
    except Exception as exc:  # noqa: BLE001 - the run boundary, in the worker
        return asdict(fail_run(cfg, None, key, Path(results_dir), exc))
    tracker = Tracker(tracking_uri, Path(results_dir))
    return asdict(execute_run(cfg, inputs, Path(results_dir), tracker, progress=False, log_embeddings=log_embeddings,
                              workers=workers))


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


def run_on_ray(runs: list[RunConfig], keys: list[str], data_dir: Path, results_dir: Path, tracking_uri: str,
               address: str | None = None, cpus_per_run: float = 1.0,
               log_embeddings: bool = False, local_cpus: int | None = None, workers: int = 1,
               features: dict | None = None) -> list[RunRecord]:
    """Submit every run as a Ray task and wait for all (RAY_ADDRESS selects an existing cluster).

    ``local_cpus`` starts a private local Ray with that many CPUs instead (``run --jobs N``);
    ``workers`` is each run's torch thread budget; ``features`` the features config the workers
    encode (default: each run's own, in full). ``keys[i]`` is ``runs[i]``'s run key. A task that
    raises anyway (a worker killed, out of memory) is recorded as a failed run here; the others go on.
    """
    start_ray(address, local_cpus)
    import ray

    task = ray.remote(num_cpus=cpus_per_run, max_retries=1)(_remote_run)
    futures = [task.remote(asdict(run), key, str(data_dir.resolve()), str(results_dir.resolve()), tracking_uri,
                           log_embeddings, workers, features) for run, key in zip(runs, keys, strict=True)]
    records = []
    for run, key, future in zip(runs, keys, futures, strict=True):
        try:
            records.append(RunRecord(**ray.get(future)))
        except Exception as exc:  # noqa: BLE001 - Ray's error for a task that died
            records.append(fail_run(run, None, key, results_dir, reason=remote_reason(exc), trace=str(exc)))
    return records


def remote_reason(exc: BaseException) -> str:
    """One line for a Ray task's error: its cause's type and message, not Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    return one_line(cause if isinstance(cause, BaseException) else exc)
