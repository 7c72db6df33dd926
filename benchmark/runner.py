"""The grid of runs: suite x methods x seeds, resumable, one atomic result folder per run.

Each run's folder ``results/<suite>/<run-key>/`` is named by a hash of its resolved config, the
split manifest and the dataset fingerprint (FuxiCTR/BARS style), and is written to a temporary
sibling first and renamed when complete, so a crash never leaves a half result and a rerun skips
exactly the finished runs. ``--executor ray`` sends each run to a Ray cluster instead of running
it here (Ray's own scheduling and retries; results and MLflow must be shared between machines).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark import registry
from benchmark.config import RunConfig, flatten, load_suite_file, resolve
from benchmark.devices import check_devices
from benchmark.errors import BenchmarkError, ConfigError, MissingRequirementError
from benchmark.failures import clear_failure, read_failures, record_failure
from benchmark.fsutil import atomic_write_dir, file_lock, remove_dead_tmp_dirs, remove_stale_tmp, safe_name
from benchmark.inputs import Inputs, features_needed, prepare_inputs
from benchmark.plugin import Method, RunContext
from benchmark.progress import configure_logging, progress_factory
from benchmark.ray_executor import ray_map, remote_reason
from benchmark.records import RunRecord
from benchmark.sync import TRACKING_FILE, log_result, run_lock_path, write_curves
from benchmark.tracking import Tracker, code_version, resolve_tracking_uri

log = logging.getLogger(__name__)
#: torch CPU threads per run, for every --jobs value. Not cores // jobs: SASRec's tiny-twin item
#: embeddings differ in the last bits between 1 and 2 threads (same seed, same key), and on the
#: shared 2-core machine 2 threads per run were several times slower (OpenMP waits on busy cores).
RUN_THREADS = 1


def run_key(run: RunConfig, inputs: Inputs) -> str:
    payload = run.identity_json() + inputs.split.manifest_hash + inputs.dataset.fingerprint
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_embeddings(name: str, emb: Any, n_rows: int, what: str = "embeddings", rows: str = "items") -> np.ndarray:
    if not isinstance(emb, np.ndarray) or emb.ndim != 2 or emb.shape[0] != n_rows or emb.shape[1] < 1:
        shape = getattr(emb, "shape", type(emb).__name__)
        raise BenchmarkError(f"method {name!r} returned {what} of shape {shape}, expected [{n_rows}, d]")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise BenchmarkError(f"method {name!r} returned non-finite {what} (NaN/inf) for {bad} {rows}")
    return np.ascontiguousarray(emb, dtype=np.float32)


def _plain(value: Any) -> Any:
    """JSON-safe copy of a method's stats: numbers, strings, booleans and lists/dicts of them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value[:1000]]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _tags(run: RunConfig, inputs: Inputs, cls: type[Method], key: str, display: str) -> dict[str, str]:
    tags = {
        "task": "matching",
        "suite": run.suite,
        "method": run.method,
        "method_display": display,
        "dataset": inputs.dataset.name,
        "dataset_label": inputs.label,
        "synthetic": "true" if inputs.synthetic else "false",
        "manifest_hash": inputs.split.manifest_hash,
        "scale": run.scale,
        "seed": str(run.seed),
        "run_key": key,
        "code_version": code_version(),
        "mlflow.runName": f"{run.method}-s{run.seed}",
        # ranks above the cap are stored as cap + 1 in ranks.npy / next_item_ranks.npy
        "evaluation.rank_cap": str(run.evaluation.get("rank_cap") or "none"),
    }
    for modality, encoder in inputs.features.encoder_ids().items():
        tags[f"encoder.{modality}"] = encoder
    tags.update({str(k): str(v) for k, v in cls.tags.items()})
    return tags


def _next_item(method: Method, cls: type[Method], run: RunConfig, inputs: Inputs, progress: bool) -> np.ndarray:
    """Per-case ranks of the next-item protocol (user vector from the history -> held-out item)."""
    from benchmark.evaluation.next_item import next_item_ranks

    cases, histories = inputs.split.cases, inputs.split.histories
    users = _check_embeddings(run.method, method.user_embeddings(histories), len(cases),
                              what="user embeddings", rows="cases")
    candidates = _check_embeddings(run.method, method.next_item_embeddings(), inputs.train.n_items,
                                   what="next-item candidate embeddings")
    return next_item_ranks(
        candidates, users, cases.target, scoring=cls.next_item_scoring, histories=histories,
        exclude_history=bool(run.evaluation.get("exclude_history", False)),
        block_queries=run.evaluation["block_queries"], block_items=run.evaluation["block_items"], progress=progress,
        rank_cap=run.evaluation.get("rank_cap"),
    )


def execute_run(run: RunConfig, inputs: Inputs, results_dir: Path, tracker: Tracker | None,
                progress: bool = True, log_embeddings: bool = False, workers: int = 1) -> RunRecord:
    """Fit one method at one seed, evaluate it, and store the result (or the reason it was skipped).

    The result folder holds the per-case ranks of both protocols (``ranks.npy`` item-to-item,
    ``next_item_ranks.npy`` when the method has a user encoder) and the item embeddings with
    their ids (benchmark/embeddings.py). MLflow gets the embeddings' path and checksum, and the
    array itself only with ``log_embeddings``.

    Results first, tracking second: the folder is complete and renamed into place before any
    MLflow call; a tracking failure is recorded in result.json ("not logged") and never raises.
    Under a per-key file lock, so processes sharing ``results_dir`` compute each key once.
    ``workers``: the run's CPU thread budget (``RunContext.workers``), recorded in result.json.
    """
    safe_name(run.suite, "suite name")
    key = run_key(run, inputs)
    folder = results_dir / run.suite / key
    lock = run_lock_path(results_dir, run.suite, key)
    if (folder / "result.json").exists():
        return _cached(folder, tracker, lock, log_embeddings)
    with file_lock(lock):  # each run key is computed once
        if (folder / "result.json").exists():  # another process finished it while we waited
            return _cached(folder, None, lock, log_embeddings)
        remove_stale_tmp(folder)  # we hold the key's lock: its writer is dead
        try:
            record = _compute(run, inputs, key, folder, progress, workers)
        except Exception as exc:  # noqa: BLE001 - the run boundary: one failing run never stops the grid
            return fail_run(run, inputs, key, results_dir, exc)
        clear_failure(results_dir / run.suite, key)
        if tracker is not None:
            record = log_result(tracker, folder, log_embeddings)
        return record


def training_record(method: Method, cls: type[Method], wall_s: float, cpu_s: float) -> dict[str, Any]:
    """The run's training budget: the method's ``stats["training"]`` plus the fit's wall and CPU seconds.

    A method that learns nothing is "untrained"; a trained one that recorded no budget is "not
    recorded" (its claims are then inconclusive, never silently trusted).
    """
    recorded = (getattr(method, "stats", {}) or {}).get("training")
    out = _plain(dict(recorded)) if isinstance(recorded, dict) else {}
    if not out:
        out = {"stop_reason": "not recorded" if cls.trains else "untrained"}
    out.update({"fit_wall_s": round(wall_s, 3), "fit_cpu_s": round(cpu_s, 3)})
    return out


def fail_run(run: RunConfig, inputs: Inputs | None, key: str, results_dir: Path, exc: BaseException | None = None,
             *, reason: str | None = None, trace: str | None = None) -> RunRecord:
    """Record a failed run under ``results/<suite>/.failed/`` and return its in-memory record.

    No result folder exists for it, so the next ``run`` retries it; ``exc`` when caught here, else
    ``reason`` + ``trace`` (a Ray worker's error).
    """
    cls = registry.get_method(run.method)
    dataset = {} if inputs is None else {"name": inputs.dataset.name, "label": inputs.label,
                                         "synthetic": inputs.synthetic, "fingerprint": inputs.dataset.fingerprint}
    record = RunRecord(run_key=key, suite=run.suite, method=run.method, display=cls.display_name or run.method,
                       paper_column=cls.paper_column, seed=run.seed, scale=run.scale, status="failed",
                       dataset=dataset, manifest_hash="" if inputs is None else inputs.split.manifest_hash,
                       tracking={"status": "not logged", "reason": "the run failed"}, code_version=code_version())
    failure = record_failure(results_dir / run.suite, key, f"{run.method} seed {run.seed}", exc, reason=reason,
                             trace=trace, meta={"record": asdict(record)})
    record.reason, record.tags = failure.reason, {"failure_log": failure.log}
    log.error("%s FAILED: %s (traceback: %s)", failure.label, failure.reason, failure.log)
    return record


def failed_records(results_dir: Path, suite: str, keys: set[str]) -> list[RunRecord]:
    """The failed runs among ``keys`` as records (for reports), from ``results/<suite>/.failed/``."""
    out = []
    for f in read_failures(results_dir / suite, keys):
        try:
            out.append(RunRecord(**{**f.meta["record"], "status": "failed", "reason": f.reason,
                                    "tags": {"failure_log": f.log}}))
        except (KeyError, TypeError):  # written by another version: not a record we can show
            continue
    return out


def _cached(folder: Path, tracker: Tracker | None, lock: Path, log_embeddings: bool) -> RunRecord:
    """A finished run; one that a tracking outage (or a kill) left unlogged is logged now if possible."""
    record = RunRecord.read(folder)
    unlogged = record.tracking.get("status") in ("pending", "not logged") and (folder / TRACKING_FILE).is_file()
    if unlogged and tracker is not None and tracker.down is None:
        with file_lock(lock, blocking=False) as mine:
            if mine:  # else a live process is still logging it
                record = log_result(tracker, folder, log_embeddings)
    record.timings = {**record.timings, "cached": True}
    return record


def _compute(run: RunConfig, inputs: Inputs, key: str, folder: Path, progress: bool, workers: int = 1) -> RunRecord:
    """Fit, evaluate and write the complete result folder (atomically); no tracking here."""
    from benchmark.embeddings import EMBEDDINGS_FILE, write_embeddings
    from benchmark.evaluation.breakdown import grouped_metrics
    from benchmark.evaluation.exact import target_ranks
    from benchmark.evaluation.metrics import NEXT_ITEM_METRICS
    from benchmark.machine import machine_info

    cls = registry.get_method(run.method)
    method = cls()
    display = method.display(inputs.features)
    record = RunRecord(
        run_key=key, suite=run.suite, method=run.method, display=display, paper_column=cls.paper_column,
        seed=run.seed, scale=run.scale, status="done",
        dataset={"name": inputs.dataset.name, "label": inputs.label, "synthetic": inputs.synthetic,
                 "fingerprint": inputs.dataset.fingerprint,
                 "domain_interactions": inputs.domain_interactions()},
        manifest_hash=inputs.split.manifest_hash, encoders=inputs.features.encoder_ids(),
        code_version=code_version(), tags={str(k): str(v) for k, v in cls.tags.items()},
        tracking={"status": "pending"}, machine={**machine_info(), "run_threads": int(workers)},
        evaluation=dict(run.evaluation),
    )
    tags = _tags(run, inputs, cls, key, display)
    missing = cls.requires - inputs.available()
    curves: list[tuple[str, float, int]] = []
    ranks = next_ranks = emb = None
    if missing:
        record.status = "skipped"
        record.reason = f"dataset lacks {', '.join(sorted(missing))} (method requires {', '.join(sorted(cls.requires))})"
        log.warning("skipping %s: %s", run.method, record.reason)
        tags["skipped"] = record.reason
    else:
        ctx = RunContext(
            seed=run.seed, scale=run.scale, progress=progress_factory(progress),
            log_metric=lambda name, value, step=None: curves.append((name, float(value), int(step or 0))),
            logger=logging.getLogger(f"benchmark.methods.{run.method}"), workers=workers,
        )
        ctx.seed_everything()
        t0, cpu0 = time.perf_counter(), time.process_time()
        fitted = True
        try:
            with ctx.threads():
                method.fit(inputs.train, inputs.features, run.method_config, ctx)
        except MissingRequirementError as exc:  # found out during fit (e.g. too few items for a PQ)
            fitted = False
            record.status = "skipped"
            record.reason = str(exc)
            log.warning("skipping %s: %s", run.method, record.reason)
            tags["skipped"] = record.reason
        if fitted:
            t1 = time.perf_counter()
            record.training = training_record(method, cls, t1 - t0, time.process_time() - cpu0)
            curves += [(f"valid/{record.training.get('metric', 'score')}", float(v), int(s))
                       for s, v in record.training.get("curve", [])]
            n_items = inputs.train.n_items
            emb = _check_embeddings(run.method, method.item_embeddings(), n_items)
            query_emb = method.query_embeddings()
            if query_emb is not None:
                query_emb = _check_embeddings(run.method, query_emb, n_items)
            cases = inputs.split.cases
            pool_by_domain = run.evaluation["candidate_pool"] == "domain"
            ranks = target_ranks(
                emb, cases.query, cases.target,
                candidate_domain=cases.target_domain if pool_by_domain else None,
                item_domain=inputs.train.item_domain if pool_by_domain else None,
                block_queries=run.evaluation["block_queries"], block_items=run.evaluation["block_items"],
                progress=progress, query_embeddings=query_emb, rank_cap=run.evaluation.get("rank_cap"),
            )
            record.metrics = grouped_metrics(ranks, cases, inputs.train.domains)
            record.method_stats = _plain(getattr(method, "stats", {}) or {})
            t2 = time.perf_counter()
            record.timings = {"fit_s": round(t1 - t0, 3), "eval_s": round(t2 - t1, 3)}
            if cls.supports_next_item():
                next_ranks = _next_item(method, cls, run, inputs, progress)
                record.next_item_metrics = grouped_metrics(next_ranks, cases, inputs.train.domains, NEXT_ITEM_METRICS)
                record.timings["next_item_s"] = round(time.perf_counter() - t2, 3)

    def write(tmp: Path) -> None:
        (tmp / "config.yaml").write_text(yaml.safe_dump(run.as_dict(), sort_keys=False))
        if ranks is not None:
            np.save(tmp / "ranks.npy", ranks.astype(np.int32))
        if next_ranks is not None:
            np.save(tmp / "next_item_ranks.npy", next_ranks.astype(np.int32))
        if emb is not None:
            record.embeddings = write_embeddings(tmp, emb, inputs.train.items)
            record.embeddings["path"] = str((folder / EMBEDDINGS_FILE).resolve())
            tags["embeddings.path"] = record.embeddings["path"]
            tags["embeddings.sha256"] = record.embeddings["sha256"]
            tags["embeddings.shape"] = "x".join(str(x) for x in record.embeddings["shape"])
        if curves:
            write_curves(tmp / "curves.csv", curves)
        metrics = {**record.metrics, **{f"next_item/{g}": v for g, v in record.next_item_metrics.items()}}
        (tmp / TRACKING_FILE).write_text(json.dumps({
            "experiment": run.suite, "run_name": tags["mlflow.runName"],
            "params": {**run.as_dict(), "run_key": key}, "tags": tags, "metrics": metrics}, indent=1, default=str))
        (tmp / "result.json").write_text(json.dumps(asdict(record), indent=1, default=str))

    atomic_write_dir(folder, write, checksums=True)
    return record


def _remote_run(run: dict, key: str, data_dir: str, results_dir: str, tracking_uri: str,
                log_embeddings: bool = False, workers: int = 1, features: dict | None = None) -> dict:
    """One run as a Ray task: rebuild its inputs from the data-dir caches, run it at the run boundary."""
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


def run_on_ray(runs: list[RunConfig], keys: list[str], data_dir: Path, results_dir: Path, tracking_uri: str,
               log_embeddings: bool = False, local_cpus: int | None = None, workers: int = 1,
               features: dict | None = None) -> list[RunRecord]:
    """Every run as a Ray task (``keys[i]`` is ``runs[i]``'s run key); records in the order of ``runs``.

    ``local_cpus`` starts a private local Ray (``--jobs N``), else RAY_ADDRESS selects a cluster;
    ``workers`` is each run's torch thread budget; ``features`` the features config the workers
    encode. A task that died is recorded as a failed run here; the others go on.
    """
    calls = [(asdict(run), key, str(data_dir.resolve()), str(results_dir.resolve()), tracking_uri, log_embeddings,
              workers, features) for run, key in zip(runs, keys, strict=True)]
    out = ray_map(_remote_run, calls, local_cpus=local_cpus)
    return [fail_run(run, None, key, results_dir, reason=remote_reason(value), trace=str(value))
            if isinstance(value, BaseException) else RunRecord(**value)
            for run, key, value in zip(runs, keys, out, strict=True)]


@dataclass
class SuiteRun:
    suite: str
    records: list[RunRecord]
    inputs: Inputs
    results_dir: Path


def plan(suite: str, scale: str | None = None, methods: list[str] | None = None,
         seeds: list[int] | None = None, overrides: tuple[str, ...] = (),
         allow_extra_methods: bool = False) -> list[RunConfig]:
    """Resolve a suite into its run configs (validates everything before any work starts).

    ``methods`` must be among the suite's own methods; others only with ``allow_extra_methods``,
    and then the config they run with (their defaults and own scale preset) is logged. Every
    run's devices and method config (``Method.check_config``) are checked here, before any data loads.
    """
    suite_cfg = load_suite_file(registry.suite_path(suite))
    names = methods or suite_cfg["methods"]
    classes = {name: registry.get_method(name) for name in names}
    extra = [n for n in names if n not in suite_cfg["methods"]]
    if extra and not allow_extra_methods:
        raise BenchmarkError(
            f"method(s) {', '.join(extra)} are not in suite {suite_cfg['name']!r} (its methods: "
            f"{', '.join(suite_cfg['methods'])}). "
            "Pass --allow-extra-methods to run them too (with their own defaults and scale presets)")
    runs = resolve(suite_cfg, {name: cls.default_config() for name, cls in classes.items()}, scale=scale,
                   methods=names, seeds=seeds, overrides=overrides,
                   presets_for={name: cls.scale_presets() for name, cls in classes.items()})
    # a missing GPU fails here, before any work: the feature encoders' device, then each method's
    check_devices([("features", runs[0].features), *((run.method, run.method_config) for run in runs)])
    for run in runs:  # and a value the method cannot run with (one line, exit 2)
        try:
            classes[run.method].check_config(dict(run.method_config))
        except BenchmarkError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{run.method}: config does not validate ({type(exc).__name__}: {exc})") from None
    for run in runs:
        if run.method in extra and run.seed == runs[0].seed:
            shown = ", ".join(f"{k}={v}" for k, v in flatten(run.method_config).items()
                              if any(w in k for w in ("epoch", "batch", "dim", "lr")))
            log.warning("%s is not a method of suite %s: it runs with its own defaults and scale preset: %s",
                        run.method, run.suite, shown or "see its config.yaml")
    return runs


def run_suite(
    suite: str,
    *,
    scale: str | None = None,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    overrides: tuple[str, ...] = (),
    allow_extra_methods: bool = False,
    data_dir: Path = Path("data"),
    results_dir: Path = Path("results"),
    tracking_uri: str | None = None,
    executor: str = "local",
    progress: bool = True,
    log_embeddings: bool = False,
    jobs: int | str = 1,
    echo: Callable[[str], None] = print,
    twin_fallback: bool = True,
) -> SuiteRun:
    """Run (or resume) every run of a suite and return their records.

    ``jobs`` > 1 runs that many runs at once on this machine, through the same Ray executor that
    scales out to a cluster (one mechanism); ``"auto"`` = min(cores, runs still to compute). Each
    run keeps a budget of RUN_THREADS torch thread(s) whatever ``jobs`` is, so its numbers do not depend on it.
    An effective 1 runs here, without starting Ray. ``twin_fallback=False`` (the CLI, when a data directory
    was given): a suite on real XMarket fails if the files are missing instead of switching to the
    synthetic twin.
    """
    jobs = check_jobs(jobs)
    runs = plan(suite, scale=scale, methods=methods, seeds=seeds, overrides=overrides,
                allow_extra_methods=allow_extra_methods)
    first = runs[0]
    features = features_needed(first.features, {registry.get_method(r.method) for r in runs})
    inputs = prepare_inputs(first.dataset, first.split, features, data_dir, first.scale, progress,
                            twin_fallback=twin_fallback)
    if inputs.banner:
        echo(f"*** {inputs.banner}")
    pending = sum(not (results_dir / first.suite / run_key(r, inputs) / "result.json").exists() for r in runs)
    jobs, threads = effective_jobs(jobs, pending)
    echo(f"suite {first.suite}: {len(runs)} run(s) on {inputs.label}; "
         f"{len(inputs.split.cases)} test cases, manifest {inputs.split.manifest_hash[:12]}"
         + (f"; {pending} to compute, {jobs} at once with {threads} thread(s) each" if executor == "local" else ""))
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchmarkError(f"{results_dir}: cannot create the results directory ({exc.strerror})") from None
    remove_dead_tmp_dirs(results_dir / safe_name(first.suite, "suite name"))
    uri = resolve_tracking_uri(results_dir, tracking_uri)
    if executor not in ("local", "ray"):
        raise BenchmarkError(f"unknown executor {executor!r}; known: local, ray")
    if executor == "ray" or jobs > 1:  # an effective 1 job runs here: no Ray start-up
        try:  # create the store once, before workers race
            Tracker(uri, results_dir).experiment_id(first.suite)
        except Exception as exc:  # noqa: BLE001 - the workers record "not logged" themselves
            log.warning("MLflow store %s unavailable (%s); results are kept, `python -m benchmark sync` "
                        "logs them later", uri, exc)
        t0 = time.perf_counter()
        records = run_on_ray(runs, [run_key(r, inputs) for r in runs], data_dir=data_dir, results_dir=results_dir,
                             tracking_uri=uri, log_embeddings=log_embeddings, local_cpus=jobs if executor == "local" else None,
                             workers=threads if executor == "local" else 1, features=features)
        for record in records:
            _echo_record(echo, record, None)
        echo(f"  ({len(records)} run(s) in {time.perf_counter() - t0:.1f}s with {jobs if executor == 'local' else 'Ray'} "
             f"{'parallel jobs' if executor == 'local' else 'cluster'})")
    else:
        tracker = Tracker(uri, results_dir)
        records = []
        for run in runs:
            t0 = time.perf_counter()
            record = execute_run(run, inputs, results_dir, tracker, progress=progress, log_embeddings=log_embeddings,
                                 workers=threads)
            _echo_record(echo, record, time.perf_counter() - t0)
            records.append(record)
    unlogged = [r for r in records if r.status != "failed" and r.tracking.get("status") == "not logged"]
    if unlogged:
        log.warning("MLflow tracking failed (%s): %d run(s) kept in %s but not logged; "
                    "`python -m benchmark sync --results-dir %s` logs them later",
                    unlogged[0].tracking.get("reason", "?"), len(unlogged), results_dir, results_dir)
    return SuiteRun(suite=first.suite, records=records, inputs=inputs, results_dir=results_dir)


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


def _echo_record(echo: Callable[[str], None], record: RunRecord, took: float | None) -> None:
    if record.status == "skipped":
        echo(f"  {record.method:<28} seed {record.seed}: SKIPPED - {record.reason}")
        return
    if record.status == "failed":
        echo(f"  {record.method:<28} seed {record.seed}: FAILED - {record.reason} "
             f"(traceback: {record.tags.get('failure_log', '?')})")
        return
    overall = record.metrics.get("all", {})
    when = "finished earlier" if record.timings.get("cached") else (
        f"{took:.1f}s" if took is not None else f"fit {record.timings.get('fit_s', 0):.1f}s")
    echo(f"  {record.method:<28} seed {record.seed}: HR@50 {overall.get('HR@50', float('nan')):6.2f}  "
         f"NDCG@10 {overall.get('NDCG@10', float('nan')):6.2f}  "
         + (f"next-item HR@10 {record.next_item_metrics['all']['HR@10']:6.2f}  " if record.next_item_metrics else "")
         + f"({when}, key {record.run_key})")
