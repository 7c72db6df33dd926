"""Running the transfer grid (benchmark/tasks/transfer/stages.py): here or as Ray tasks, each condition logged to MLflow.

``jobs`` 1 runs every condition here, in grid order. More jobs (``run --jobs N``) split the
pending conditions into Ray tasks on the same executor as the matching suite
(``benchmark/grid/ray_executor.py``, :func:`split_tasks`): one task per TransRec source pretraining
(the target conditions that reuse its state stay in its process, in grid order), one per TFS
condition and one small task per other condition, heavy tasks first. Each condition seeds itself and trains with
RUN_THREADS torch thread(s), so its key and ranks are the same whatever the jobs.

Results first, tracking second: a condition's folder is complete and in place before its MLflow
run is logged; a tracking failure is written into its record ("not logged") and only warns. A
resumed grid logs the finished conditions MLflow still lacks.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import registry
from benchmark.config import RunConfig, load_suite_file
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.grid.engine import KeyedRun, run_keyed
from benchmark.grid.failures import Failure, failed_line, guarded, record_failure
from benchmark.grid.jobs import RUN_THREADS, check_jobs, effective_jobs
from benchmark.grid.plan import plan
from benchmark.grid.ray_executor import ray_map, remote_reason
from benchmark.inputs import Inputs, prepare_inputs
from benchmark.machine import machine_info
from benchmark.plugin import RunContext
from benchmark.progress import configure_logging, progress_factory
from benchmark.store.records import TransferRecord, has_record
from benchmark.store.tracking import Tracker, code_version, resolve_tracking_uri
from benchmark.tasks.transfer.stages import (
    NO_TRANSFER_RECIPE,
    SOURCE_STAGE_KEYS,
    Condition,
    ShareViews,
    TargetCases,
    _category,
    _key,
    _TransRecFamily,
    conditions,
    domain_view,
    evaluate,
    summarise,
    target_cases,
    validate_transfer,
    write_condition,
)

log = logging.getLogger(__name__)
HEAVY = ("transrec", "tfs")  # the family that shares source-pretrained states within a seed


@dataclass
class Grid:
    """Everything a condition needs, rebuilt identically by every task from the suite and the data caches."""

    suite: str
    cfg: dict[str, Any]
    runs: list[RunConfig]
    inputs: Inputs
    src_codes: list[int]
    tgt_code: int
    tc: TargetCases
    src_pool: np.ndarray
    results_dir: Path
    conditions: list[Condition]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return self.results_dir / self.suite / "transfer"

    def run_for(self, cond: Condition) -> RunConfig:
        method = "transrec" if cond.method in HEAVY else cond.method
        return next(r for r in self.runs if r.method == method and r.seed == cond.seed)

    def key(self, cond: Condition) -> str:
        return _key(cond, self.run_for(cond), self.inputs, self.cfg)


def build_grid(suite: str, *, scale: str | None, methods: list[str] | None, seeds: list[int] | None,
               overrides: tuple[str, ...], data_dir: Path, results_dir: Path, progress: bool,
               echo: Callable[[str], None], twin_fallback: bool = True, allow_extra_methods: bool = False) -> Grid:
    """Validate the suite (before any work), load the inputs and expand the conditions.

    ``overrides`` reach the runs as for a matching suite (``--dataset``/``--domains`` arrive as
    ``dataset.*``); ``twin_fallback=False`` (a data directory was named) never uses the twin.
    """
    suite_cfg = load_suite_file(registry.suite_path(suite))
    if "transfer" not in suite_cfg:
        raise ConfigError(f"suite {suite!r} has no transfer: section (not a transfer suite)")
    runs = plan(suite, scale=scale, methods=methods, seeds=seeds, overrides=overrides,
                allow_extra_methods=allow_extra_methods)
    first = runs[0]
    if first.dataset.get("domains"):  # checked against the run's domains (--domains included) before data loads
        validate_transfer(suite_cfg["transfer"], str(first.dataset["domains"]).split(","))
    inputs = prepare_inputs(first.dataset, first.split, first.features, data_dir, first.scale, progress,
                            twin_fallback=twin_fallback)
    if inputs.banner:
        echo(f"*** {inputs.banner}")
    cfg = validate_transfer(suite_cfg["transfer"], list(inputs.train.domains))
    doms = [_category(d) for d in inputs.train.domains]
    src_codes = [doms.index(d) for d in cfg["source_domains"]]
    tgt_code = doms.index(cfg["target_domain"])
    names = sorted({r.method for r in runs})
    grid = Grid(suite=first.suite, cfg=cfg, runs=runs, inputs=inputs, src_codes=src_codes, tgt_code=tgt_code,
                tc=target_cases(inputs, tgt_code), results_dir=results_dir,
                src_pool=np.flatnonzero(np.isin(inputs.train.item_domain, src_codes)).astype(np.int64),
                conditions=conditions(cfg, sorted({r.seed for r in runs}), names))
    for name in names:
        cls = registry.get_method(name)
        missing = cls.requires - inputs.available()
        if missing:
            grid.skipped[name] = f"dataset lacks {', '.join(sorted(missing))}"
        elif name in cfg["finetune_methods"] and not cls.supports_transfer():
            grid.skipped[name] = NO_TRANSFER_RECIPE
    return grid


# ----------------------------------------------------------------------------- one condition


def guarded_condition(g: Grid, cond: Condition, families: dict[int, _TransRecFamily], tracker: Tracker | None,
                      progress: bool = False) -> str:
    """:func:`execute_condition` at the run boundary: its line, or its FAILED line (the failure recorded)."""
    out = guarded(g.out_dir, g.key(cond), cond.label,
                  lambda: execute_condition(g, cond, families, tracker, progress))
    if isinstance(out, Failure):
        families.pop(cond.seed, None)  # a half-trained family is not reused
        return failed_line(out)
    return out


def execute_condition(g: Grid, cond: Condition, families: dict[int, _TransRecFamily], tracker: Tracker | None,
                      progress: bool = False) -> str:
    """Train and evaluate one condition on the engine (benchmark/grid/engine.py); return its summary line.

    ``families`` is the caller's TransRec cache (one seed's family at a time). A finished
    condition is read back (and logged now if MLflow lacks it), not retrained.
    """
    key = g.key(cond)
    where = KeyedRun(g.results_dir, g.suite, key, g.out_dir / key, lock_name=f"transfer-{key}")
    record, cached = run_keyed(where, lambda tmp: _compute_condition(g, cond, key, tmp, families, progress), tracker)
    assert isinstance(record, TransferRecord)
    if cached:
        return f"  {cond.label:<40} finished earlier (key {key})"
    all_ = record.next_item["all"]
    return (f"  {cond.label:<40} HR@10 {all_['HR@10']:6.2f}  NDCG@10 {all_['NDCG@10']:6.2f}  "
            f"({record.seconds:.1f}s, key {key})")


def _compute_condition(g: Grid, cond: Condition, key: str, tmp: Path, families: dict[int, _TransRecFamily],
                       progress: bool) -> None:
    """Train and evaluate one condition; write its complete folder into ``tmp`` (tracking.json says what to log)."""
    run = g.run_for(cond)
    method = run.method
    ctx = RunContext(seed=cond.seed, scale=run.scale, progress=progress_factory(progress),
                     logger=logging.getLogger(f"benchmark.methods.{method}"), workers=RUN_THREADS)
    ctx.seed_everything()
    t0 = time.perf_counter()
    inputs, tc = g.inputs, g.tc
    target_view = domain_view(inputs.train, [g.tgt_code], cond.target_fraction, cond.seed, 2)
    with ctx.threads():
        if method == "transrec":
            for seed in [s for s in families if s != cond.seed]:
                del families[seed]  # free other seeds' towers
            fam = families.setdefault(cond.seed, _TransRecFamily(inputs, run, ctx))
            fam.ctx = ctx
            fixed, mc = g.cfg["validation"] == "full", run.method_config
            sides = [ShareViews(inputs.train, codes, cond.seed, stream, float(mc["valid_fraction"]),
                                int(mc["valid_max_cases"]), fixed) for codes, stream in ((g.src_codes, 1), ([g.tgt_code], 2))]
            rule = {k.removeprefix("source_"): int(g.cfg[k]) for k in SOURCE_STAGE_KEYS if k in g.cfg}
            model = fam.train(cond, sides[0], sides[1], g.src_pool, tc.pool, fixed_validation=fixed, source_rule=rule)
            is_text = model.is_text
            display = {"transrec": "TransRec", "tfs": "TFS"}[cond.method]
            stats = copy.deepcopy(model.stats)
        else:
            model = registry.get_method(method)()
            if cond.source_fraction is None:  # an ID baseline: trained on the target only
                model.fit(target_view, inputs.features, run.method_config, ctx)
            else:  # its own recipe: pretrain on the source domains, fine-tune on the target
                source_view = domain_view(inputs.train, g.src_codes, cond.source_fraction, cond.seed, 1)
                model.fit_transfer(source_view, target_view, inputs.features, run.method_config, ctx)
            is_text, display, stats = None, model.display(inputs.features), getattr(model, "stats", {})
        users = model.user_embeddings(tc.histories)
        nxt, i2i = evaluate(users, model.next_item_embeddings(), type(model).next_item_scoring,
                            model.item_embeddings(), tc)
    groups = {"all": np.ones(len(nxt), dtype=bool), "overlapped": tc.overlapped, "unseen": ~tc.overlapped}
    if is_text is not None:
        groups.update({"text-target": is_text[tc.target], "image-target": ~is_text[tc.target]})
    seconds = round(time.perf_counter() - t0, 2)
    stats = dict(stats or {})
    record = TransferRecord(
        run_key=key, suite=g.suite, seed=cond.seed, scale=run.scale, manifest_hash=inputs.split.manifest_hash,
        dataset={"name": inputs.dataset.name, "label": inputs.label, "synthetic": inputs.synthetic,
                 "manifest_hash": inputs.split.manifest_hash, "paper_data": inputs.paper_data},
        condition=dict(cond.__dict__), display=display, transfer=g.cfg, method_config=run.method_config,
        scaled_by_preset=run.scaled_by_preset, target_cases=int(len(nxt)),
        target_train_sequences=len(target_view.sequences), next_item=summarise(nxt, groups),
        item_to_item=summarise(i2i, groups), training=dict(stats.get("training") or {}),
        timings={"fit_s": seconds}, seconds=seconds, stats=stats, run_threads=RUN_THREADS,
        code_version=code_version(), machine=machine_info(), tracking={"status": "pending"})
    record.metrics = {"next_item": record.next_item}
    write_condition(tmp, record, nxt, i2i, tracking_info(record.as_dict()))


def tracking_info(record: dict[str, Any]) -> dict[str, Any]:
    """What a condition logs to MLflow: experiment, run name, params, tags and metrics, from its record."""
    cond, key, suite = record["condition"], record["run_key"], record["suite"]
    frozen = "" if cond.get("end_to_end", True) else "-frozen"
    src = "" if cond["source_fraction"] is None else f"-src{cond['source_fraction']:g}"
    tags = {"suite": suite, "task": "transfer", "method": cond["method"], "method_display": record["display"],
            "seed": str(cond["seed"]), "scale": record["scale"], "run_key": key,
            "dataset": str(record["dataset"].get("name")), "dataset_label": record["dataset"]["label"],
            "synthetic": "true" if record["dataset"]["synthetic"] else "false",
            "manifest_hash": record["dataset"]["manifest_hash"], "code_version": record.get("code_version", ""),
            "source_fraction": str(cond["source_fraction"]), "target_fraction": str(cond["target_fraction"]),
            "end_to_end": str(cond.get("end_to_end", True)).lower(),
            "mlflow.runName": f"{cond['method']}{src}-tgt{cond['target_fraction']:g}{frozen}-s{cond['seed']}"}
    params = {"condition": cond, "method_config": record["method_config"], "transfer": record["transfer"],
              "run_key": key, "target_cases": record["target_cases"]}
    metrics = {f"{protocol}/{group}": {k: v for k, v in row.items() if k != "n"}
               for protocol in ("next_item", "item_to_item") for group, row in record[protocol].items()}
    return {"experiment": suite, "run_name": tags["mlflow.runName"], "params": params, "tags": tags, "metrics": metrics}


# ----------------------------------------------------------------------------- the grid


def split_tasks(conds: list[Condition]) -> list[list[Condition]]:
    """Tasks for ``--jobs``: TransRec's conditions that start from one source pretraining (a seed, a
    source share, end-to-end or frozen) together, so it is trained once; each TFS condition alone;
    each ID-baseline condition alone. Heavy first (end-to-end before frozen, TransRec's groups by
    size), so two workers are not left with one long task at the end (one task per seed's family
    did that: the third seed ran alone on one of two cores)."""
    groups: dict[tuple, list[Condition]] = {}
    light: list[list[Condition]] = []
    for cond in conds:
        if cond.method == "transrec":
            groups.setdefault(("transrec", cond.seed, cond.end_to_end, cond.source_fraction), []).append(cond)
        elif cond.method in HEAVY:
            groups[("tfs", *cond.__dict__.values())] = [cond]
        else:
            light.append([cond])

    def weight(task: list[Condition]) -> float:
        source = 1.0 if task[0].source_fraction is not None else 0.0
        return (source + len(task)) * (1.0 if task[0].end_to_end else 0.25)

    return [*sorted(groups.values(), key=weight, reverse=True), *light]


def _remote_conditions(args: dict[str, Any], conds: list[dict], tracking_uri: str) -> list[str]:
    """A Ray task: rebuild the grid from the suite and the data-dir caches, run ``conds`` in order."""
    configure_logging()
    g = build_grid(**args, progress=False, echo=lambda s: None)
    tracker = Tracker(tracking_uri, g.results_dir)
    families: dict[int, _TransRecFamily] = {}
    return [guarded_condition(g, Condition(**c), families, tracker) for c in conds]


def run_transfer(suite: str, *, scale: str | None = None, methods: list[str] | None = None,
                 seeds: list[int] | None = None, overrides: tuple[str, ...] = (), data_dir: Path = Path("data"),
                 results_dir: Path = Path("results"), tracking_uri: str | None = None, jobs: int | str = 1,
                 executor: str = "local", progress: bool = True, echo: Callable[[str], None] = print,
                 twin_fallback: bool = True, allow_extra_methods: bool = False) -> Path:
    """Run (or resume) the transfer grid of ``suite``; return its results folder.

    ``jobs``: conditions' tasks at once on this machine (``"auto"`` = min(cores, tasks)); an
    effective 1 runs here without Ray. ``executor="ray"`` sends the tasks to a Ray cluster.
    """
    jobs = check_jobs(jobs)
    if executor not in ("local", "ray"):
        raise BenchmarkError(f"unknown executor {executor!r}; known: local, ray")
    g = build_grid(suite, scale=scale, methods=methods, seeds=seeds, overrides=overrides, data_dir=data_dir,
                   results_dir=results_dir, progress=progress, echo=echo, twin_fallback=twin_fallback,
                   allow_extra_methods=allow_extra_methods)
    cfg = g.cfg
    echo(f"suite {g.suite}: {len(g.conditions)} transfer condition(s) on {g.inputs.label}; "
         f"{'+'.join(cfg['source_domains'])} -> {cfg['target_domain']}; {len(g.tc.rows)} target test cases")
    for name, reason in g.skipped.items():
        echo(f"  {name}: SKIPPED - {reason}")
    todo = [c for c in g.conditions if g.run_for(c).method not in g.skipped]
    pending = [c for c in todo if not has_record(g.out_dir / g.key(c))]
    tasks = split_tasks(pending)
    n_jobs = min(effective_jobs(jobs, len(tasks))[0], max(len(tasks), 1))  # no Ray for 0 or 1 task
    results_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(results_dir, tracking_uri)
    tracker = Tracker(uri, results_dir)
    families: dict[int, _TransRecFamily] = {}
    if not tasks or (executor == "local" and n_jobs == 1):  # here, in grid order
        for cond in todo:
            echo(guarded_condition(g, cond, families, tracker, progress))
        return g.out_dir
    for cond in todo:  # finished earlier: read back (and logged if MLflow lacks it) here
        if cond not in pending:
            echo(execute_condition(g, cond, families, tracker, progress))
    try:  # create the experiment once, before the tasks race
        tracker.prepare(g.suite)
    except Exception as exc:  # noqa: BLE001 - each condition records "not logged" itself
        log.warning("MLflow store %s unavailable (%s); the conditions' results are kept", uri, exc)
    args = {"suite": suite, "scale": scale, "methods": methods, "seeds": seeds, "overrides": tuple(overrides),
            "data_dir": data_dir, "results_dir": results_dir, "twin_fallback": twin_fallback,
            "allow_extra_methods": allow_extra_methods}
    _run_tasks(tasks, [[g.key(c) for c in task] for task in tasks], g.out_dir, args, uri,
               n_jobs if executor == "local" else None, echo)
    return g.out_dir


def _run_tasks(tasks: list[list[Condition]], keys: list[list[str]], out_dir: Path, args: dict[str, Any], uri: str,
               local_cpus: int | None, echo: Callable[[str], None]) -> None:
    """Submit the tasks (heavy first) to Ray and echo each one's lines as it finishes.

    ``args`` rebuild the grid in the worker (:func:`build_grid`'s keywords). A task that died has
    each of its unfinished conditions recorded as failed; the other tasks go on.
    """
    path = Path(args["suite"])
    if path.suffix in {".yaml", ".yml"} and path.exists():  # a suite file: workers may have another cwd
        args = {**args, "suite": str(path.resolve())}
    args = {**args, "data_dir": Path(args["data_dir"]).resolve(), "results_dir": Path(args["results_dir"]).resolve()}
    t0 = time.perf_counter()

    def done(i: int, lines: Any) -> None:
        if isinstance(lines, BaseException):  # the whole task died (killed worker, out of memory, bad data)
            failed = [record_failure(out_dir, key, cond.label, reason=remote_reason(lines), trace=str(lines))
                      for cond, key in zip(tasks[i], keys[i], strict=True)
                      if not has_record(out_dir / key)]
            lines = [failed_line(f) for f in failed]
        for line in lines:
            echo(line)

    ray_map(_remote_conditions, [(args, [c.__dict__ for c in task], uri) for task in tasks], local_cpus=local_cpus,
            on_done=done)
    echo(f"  ({sum(map(len, tasks))} condition(s) in {len(tasks)} task(s), {time.perf_counter() - t0:.1f}s "
         f"with {local_cpus if local_cpus else 'a Ray cluster of'} parallel job(s))")
