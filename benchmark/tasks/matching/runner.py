"""The grid of runs: suite x methods x seeds, resumable, one atomic result folder per run.

Each run's folder ``results/<suite>/<run-key>/`` is named by a hash of its resolved config, the
split manifest and the dataset fingerprint (FuxiCTR/BARS style), and is written to a temporary
sibling first and renamed when complete, so a crash never leaves a half result and a rerun skips
exactly the finished runs. ``--executor ray`` sends each run to a Ray cluster instead of running
it here (Ray's own scheduling and retries; results and MLflow must be shared between machines).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark import registry
from benchmark.config import RunConfig
from benchmark.errors import BenchmarkError, MissingRequirementError
from benchmark.evaluation.breakdown import grouped_metrics
from benchmark.evaluation.exact import target_ranks
from benchmark.evaluation.metrics import NEXT_ITEM_METRICS
from benchmark.evaluation.next_item import next_item_ranks
from benchmark.fsutil import remove_dead_tmp_dirs, safe_name
from benchmark.grid.engine import KeyedRun, elapsed_text, run_keyed
from benchmark.grid.failures import clear_failure, read_failures, record_failure
from benchmark.grid.jobs import check_jobs, effective_jobs
from benchmark.grid.plan import plan, run_key
from benchmark.grid.ray_executor import ray_map, remote_reason
from benchmark.inputs import Inputs, features_needed, prepare_inputs
from benchmark.machine import StageClock, machine_info
from benchmark.plugin import Method, RunContext
from benchmark.progress import configure_logging, progress_factory
from benchmark.store.embeddings import EMBEDDINGS_FILE, write_embeddings
from benchmark.store.records import RunRecord
from benchmark.store.sync import TRACKING_FILE, write_curves
from benchmark.store.timing import write_job_timing
from benchmark.store.tracking import Tracker, code_version, resolve_tracking_uri

log = logging.getLogger(__name__)
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
    their ids (benchmark/store/embeddings.py). MLflow gets the embeddings' path and checksum, and the
    array itself only with ``log_embeddings``. Keyed, locked, atomic and logged by the engine
    (benchmark/grid/engine.py); a failure is recorded at this run boundary and never raises.
    ``workers``: the run's CPU thread budget (``RunContext.workers``), recorded in result.json.
    """
    safe_name(run.suite, "suite name")
    key = run_key(run, inputs)
    where = KeyedRun(results_dir, run.suite, key, results_dir / run.suite / key)
    try:
        record, cached = run_keyed(where, lambda tmp: _compute(run, inputs, key, where.folder, tmp, progress, workers),
                                   tracker, log_embeddings)
    except Exception as exc:  # noqa: BLE001 - the run boundary: one failing run never stops the grid
        return fail_run(run, inputs, key, results_dir, exc)
    if not cached:
        clear_failure(results_dir / run.suite, key)
    assert isinstance(record, RunRecord)
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
                                         "synthetic": inputs.synthetic, "fingerprint": inputs.dataset.fingerprint,
                                         "paper_data": inputs.paper_data}
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


def _compute(run: RunConfig, inputs: Inputs, key: str, folder: Path, tmp: Path, progress: bool,
             workers: int = 1) -> None:
    """Fit, evaluate and write the complete result folder into ``tmp`` (the engine renames it to
    ``folder``); no tracking here."""

    cls = registry.get_method(run.method)
    method = cls()
    display = method.display(inputs.features)
    record = RunRecord(
        run_key=key, suite=run.suite, method=run.method, display=display, paper_column=cls.paper_column,
        seed=run.seed, scale=run.scale, status="done",
        dataset={"name": inputs.dataset.name, "label": inputs.label, "synthetic": inputs.synthetic,
                 "fingerprint": inputs.dataset.fingerprint, "paper_data": inputs.paper_data,
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
        clock = StageClock()  # wall, CPU and peak RSS per stage: the report's timing.csv
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
            fit = clock.lap("fit")
            record.training = training_record(method, cls, fit["wall_s"], fit["cpu_s"])
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
            record.timings = {"fit_s": fit["wall_s"], "eval_s": clock.lap("eval")["wall_s"]}
            if cls.supports_next_item():
                next_ranks = _next_item(method, cls, run, inputs, progress)
                record.next_item_metrics = grouped_metrics(next_ranks, cases, inputs.train.domains, NEXT_ITEM_METRICS)
                record.timings["next_item_s"] = clock.lap("next_item")["wall_s"]
            record.timings["stages"] = clock.stages

    # the folder's files, into ``tmp`` (the engine renames it to ``folder`` whole)
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
    record.write(tmp)


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
    job_clock = StageClock()
    inputs = prepare_inputs(first.dataset, first.split, features, data_dir, first.scale, progress,
                            twin_fallback=twin_fallback)
    inputs_stage = job_clock.lap("inputs")  # data, split and features (cached after the first time)
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
            Tracker(uri, results_dir).prepare(first.suite)
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
    write_job_timing(results_dir / first.suite, inputs.split.manifest_hash, {
        "inputs": inputs_stage, "runs": job_clock.lap("runs"), "jobs": jobs if executor == "local" else "ray",
        "computed": pending, "n_runs": len(runs), "scale": first.scale, "machine": machine_info()})
    return SuiteRun(suite=first.suite, records=records, inputs=inputs, results_dir=results_dir)


def _echo_record(echo: Callable[[str], None], record: RunRecord, took: float | None) -> None:
    if record.status == "skipped":
        echo(f"  {record.method:<28} seed {record.seed}: SKIPPED - {record.reason}")
        return
    if record.status == "failed":
        echo(f"  {record.method:<28} seed {record.seed}: FAILED - {record.reason} "
             f"(traceback: {record.tags.get('failure_log', '?')})")
        return
    overall = record.metrics.get("all", {})
    when = elapsed_text(record, took)
    echo(f"  {record.method:<28} seed {record.seed}: HR@50 {overall.get('HR@50', float('nan')):6.2f}  "
         f"NDCG@10 {overall.get('NDCG@10', float('nan')):6.2f}  "
         + (f"next-item HR@10 {record.next_item_metrics['all']['HR@10']:6.2f}  " if record.next_item_metrics else "")
         + f"({when}, key {record.run_key})")
