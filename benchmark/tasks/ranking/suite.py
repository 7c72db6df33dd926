"""The ranking suite (UniEmbedding Table 4): ranking model x {w/o Emb., each method's stored embeddings} x seeds.

A ranking suite file carries ``task: ranking`` and names the matching suite whose split and
stored embeddings it uses. Embeddings are read only through ``benchmark.store.embeddings.load_embeddings``
on the matching split's manifest; when a cell's embeddings are missing the suite stops and says
which matching runs to do (or runs them first with ``fit_missing``): no cell is dropped silently.
Each cell is stored as ``results/<suite>/<run-key>/`` (result.json, test scores and labels,
learning curve) and logged to MLflow with its validation-AUC curve.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark import registry
from benchmark.config import SCALES, deep_merge, flatten, load_suite_file, parse_override
from benchmark.devices import check_device
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.grid.engine import finished
from benchmark.grid.failures import Failure, failed_line, guarded, read_failures
from benchmark.grid.jobs import check_jobs, effective_jobs
from benchmark.grid.plan import plan
from benchmark.inputs import prepare_inputs
from benchmark.progress import progress_factory
from benchmark.store.embeddings import StoredEmbeddings, load_embeddings
from benchmark.store.records import RankingRecord, has_record
from benchmark.store.tracking import Tracker, resolve_tracking_uri
from benchmark.tasks.matching.runner import run_suite
from benchmark.tasks.ranking.cells import (
    NO_FEATURES,
    RankingCell,
    cell_key,
    cell_label,
    cell_line,
    ctr_data,
    execute_cell,
)
from benchmark.tasks.ranking.models import EMBEDDING_MODES, MODELS
from benchmark.tasks.ranking.parallel import run_cells_on_ray
from benchmark.tasks.ranking.train import PRETRAINED_NORMS

log = logging.getLogger(__name__)
NONE = "none"  # the "w/o Emb." row
TOP_KEYS = {"name", "task", "description", "scale", "matching_suite", "models", "embeddings", "every_other",
            "embedding_seed", "seeds", "data", "training", "models_config", "scales"}
DATA_KEYS = {"seed", "negatives", "max_history", "validation_fraction", "max_validation", "max_train_positives"}
TRAINING_KEYS = {"id_dim", "embedding_mode", "pretrained_norm", "max_epochs", "batch_size", "lr", "weight_decay",
                 "patience", "min_delta", "plateau_lr_factor", "device"}
PRESET_KEYS = {"seeds", "every_other", "data", "training", "models_config"}


def is_ranking_suite(name: str) -> bool:
    """True when the suite file (by name or path) declares ``task: ranking``."""
    try:
        path = registry.suite_path(name)
        raw = yaml.safe_load(path.read_text())
    except (ConfigError, OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("task") == "ranking"


def _check_keys(where: str, data: Any, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _check_bool(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")


def load_ranking_suite(name: str) -> dict:
    """Read and validate a ranking suite file (one-line ConfigError on anything unknown)."""
    path = registry.suite_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({exc})") from None
    _check_keys(str(path), raw, TOP_KEYS)
    for key in ("name", "matching_suite", "models", "embeddings", "seeds", "data", "training", "models_config"):
        if key not in raw:
            raise ConfigError(f"{path}: missing required key {key!r}")
    _check_keys(f"{path}: data", raw["data"], DATA_KEYS)
    _check_keys(f"{path}: training", raw["training"], TRAINING_KEYS)
    _check_keys(f"{path}: models_config", raw["models_config"], set(MODELS))
    for scale, preset in (raw.get("scales") or {}).items():
        if scale not in SCALES:
            raise ConfigError(f"{path}: scales: unknown scale {scale!r}; known: {', '.join(SCALES)}")
        _check_keys(f"{path}: scales.{scale}", preset, PRESET_KEYS)
        _check_bool(f"{path}: scales.{scale}.every_other", preset.get("every_other", True))
    _check_bool(f"{path}: every_other", raw.get("every_other", True))
    unknown = set(raw["models"]) - set(MODELS)
    if unknown:
        raise ConfigError(f"{path}: unknown ranking model(s) {sorted(unknown)}; known: {', '.join(MODELS)}")
    return raw


def _number(where: str, value: Any, kind: type, low: float, low_open: bool = False, high: float | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{where}: expected {'an integer' if kind is int else 'a number'} {bound}, got {value!r}")


def check_budget(data: dict, training: dict) -> None:
    """Range checks of the training budget keys (one-line ConfigError before any data loads).

    ``patience`` must be below ``max_epochs``: with the cap at or below the patience no cell could
    ever stop by early stopping, and the cap would be the budget.
    """
    _number("training.max_epochs", training["max_epochs"], int, 1)
    _number("training.patience", training["patience"], int, 1)
    _number("training.batch_size", training["batch_size"], int, 1)
    _number("training.lr", training["lr"], float, 0, low_open=True)
    _number("training.min_delta", training.get("min_delta", 0.0), float, 0)
    _number("training.plateau_lr_factor", training.get("plateau_lr_factor", 1.0), float, 0, low_open=True, high=1.0)
    if training["patience"] >= training["max_epochs"]:
        raise ConfigError(f"training.patience ({training['patience']}) must be below training.max_epochs "
                          f"({training['max_epochs']}): the cap is a safety net, early stopping decides")
    if data.get("max_train_positives") is not None:
        _number("data.max_train_positives", data["max_train_positives"], int, 1)


def resolve_cells(suite: dict, scale: str | None = None, models: list[str] | None = None,
                  embeddings: list[str] | None = None, seeds: list[int] | None = None,
                  overrides: tuple[str, ...] = ()) -> tuple[str, list[str], list[RankingCell]]:
    """Expand the suite into cells: (scale, embedding names, cells). ``embeddings`` None = the suite's list."""
    scale = scale or suite.get("scale", "small")
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    preset = (suite.get("scales") or {}).get(scale, {})
    data = deep_merge(suite["data"], preset.get("data", {}))
    training = deep_merge(suite["training"], preset.get("training", {}))
    models_cfg = deep_merge(suite["models_config"], preset.get("models_config", {}))
    chosen_seeds = seeds if seeds is not None else preset.get("seeds", suite["seeds"])
    for item in overrides:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        target = {"data": data, "training": training}.get(head)
        if target is None and head in models_cfg:
            target, rest = models_cfg[head], rest
        if target is None or not rest or rest.split(".")[0] not in target:
            raise ConfigError(f"--set {key}: unknown key for a ranking suite (data.*, training.*, <model>.*)")
        target[rest] = value
    _check_keys("data", data, DATA_KEYS)
    _check_keys("training", training, TRAINING_KEYS)
    check_budget(data, training)
    if training["embedding_mode"] not in EMBEDDING_MODES:
        raise ConfigError(f"training.embedding_mode {training['embedding_mode']!r}; known: {', '.join(EMBEDDING_MODES)}")
    check_device(training.get("device"), "training.device")  # a missing GPU fails before any work
    if training["pretrained_norm"] not in PRETRAINED_NORMS:
        raise ConfigError(f"training.pretrained_norm {training['pretrained_norm']!r}; known: {', '.join(PRETRAINED_NORMS)}")
    chosen_models = models or list(suite["models"])
    unknown = set(chosen_models) - set(MODELS)
    if unknown:
        raise ConfigError(f"unknown ranking model(s) {sorted(unknown)}; known: {', '.join(MODELS)}")
    names = [NONE] + [e for e in (embeddings if embeddings is not None else suite["embeddings"]) if e != NONE]
    emb_seed = suite.get("embedding_seed", 0)
    if emb_seed != "same" and not isinstance(emb_seed, int):
        raise ConfigError(f"embedding_seed must be an integer or 'same', got {emb_seed!r}")
    scaled = flatten({k: v for k, v in preset.items()})
    cells = []
    for model in chosen_models:
        for emb in names:
            for seed in chosen_seeds:
                cfg = copy.deepcopy(training)
                cfg["model"] = copy.deepcopy(models_cfg.get(model, {}))
                cells.append(RankingCell(model=model, embedding=emb, seed=int(seed),
                                         embedding_seed=int(seed) if emb_seed == "same" else int(emb_seed),
                                         data=copy.deepcopy(data), training=cfg, scaled_by_preset=scaled))
    return scale, names, cells


def find_embeddings(results_dir: Path, matching_suite: str, names: list[str], seeds: set[int], manifest_hash: str,
                    n_items: int) -> tuple[dict[tuple[str, int], StoredEmbeddings], list[tuple[str, int, str]],
                                           dict[tuple[str, int], str]]:
    """Load every (method, seed)'s stored embeddings; return them, the missing ones and the skipped ones.

    Missing = no matching run yet (the suite says which to do); skipped = the matching run itself was
    skipped with a reason (e.g. VQ-Rec on data too small for its PQ): those cells are reported, not run.
    """
    found, missing, skipped = {}, [], {}
    for name in names:
        if name == NONE:
            continue
        for seed in sorted(seeds):
            try:
                found[(name, seed)] = load_embeddings(results_dir, matching_suite, name, seed,
                                                      manifest_hash=manifest_hash, n_items=n_items)
            except BenchmarkError as exc:
                text = str(exc)
                if "no run of method" in text or "no results for suite" in text:
                    missing.append((name, seed, text))
                elif "has no item embeddings" in text:  # the matching run itself was skipped, with its reason
                    skipped[(name, seed)] = text
                else:  # another manifest, a wrong row count, a corrupt file: bad input, stop here
                    raise
    return found, missing, skipped


def other_methods(results_dir: Path, matching_suite: str, manifest_hash: str, exclude: list[str]) -> list[str]:
    """Methods with a finished run on this manifest that the suite does not list (Table 4's "every other")."""
    base = Path(results_dir) / matching_suite
    out = set()
    for path in base.glob("*/result.json") if base.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "done" and rec.get("manifest_hash") == manifest_hash and rec.get("embeddings") \
                and rec.get("method") not in exclude and rec.get("method") not in ("random", "popularity"):
            out.add(rec["method"])
    return sorted(out)


@dataclass


class RankingRun:
    suite: str
    records: list[RankingRecord]
    results_dir: Path
    keys: set[str] = field(default_factory=set)  # every cell of the grid, failed ones included
    failures: list[Failure] = field(default_factory=list)


def matching_suite_path(suite: dict, ranking_file: Path) -> Path:
    """The suite file ``matching_suite:`` names: a shipped suite, a path, or a path beside the ranking suite."""
    name = str(suite["matching_suite"])
    here = Path(ranking_file).parent / name
    if Path(name).suffix in {".yaml", ".yml"} and not Path(name).exists() and here.exists():
        return here
    return registry.suite_path(name)


def grid_every_other(suite: dict, scale: str) -> bool:
    """Whether the grid adds every other method with stored embeddings; the scale preset's value wins."""
    preset = (suite.get("scales") or {}).get(scale) or {}
    return bool(preset.get("every_other", suite.get("every_other", True)))


def run_ranking_suite(name: str, *, scale: str | None = None, models: list[str] | None = None,
                      methods: list[str] | None = None, seeds: list[int] | None = None,
                      overrides: tuple[str, ...] = (), data_dir: Path = Path("data"),
                      results_dir: Path = Path("results"), tracking_uri: str | None = None,
                      fit_missing: bool = False, jobs: int | str = 1, executor: str = "local",
                      progress: bool = True, echo: Callable[[str], None] = print,
                      matching_overrides: tuple[str, ...] = (), twin_fallback: bool = True,
                      allow_extra_methods: bool = False, log_embeddings: bool = False) -> RankingRun:
    """Run (or resume) every cell of a ranking suite and return their records, in grid order.

    The matching suite (``matching_suite:``, a suite name or file) decides the data: its dataset,
    split and features, with ``matching_overrides`` (``dataset.*``, ``split.*``, ``features.*``:
    ``--dataset``, ``--domains``, ``--set dataset.name=...``) applied exactly as for the matching
    suite itself, and ``twin_fallback=False`` (a data directory was named) never switching to the
    synthetic twin. ``fit_missing`` runs the missing matching runs with the same data options and
    ``allow_extra_methods`` / ``log_embeddings``.

    ``jobs``: cells at once on this machine (``"auto"`` = min(cores, cells to compute)); an
    effective 1 runs every cell here, in grid order, without Ray. More jobs (or
    ``executor="ray"``, a cluster) make each pending cell a Ray task (benchmark/tasks/ranking/parallel.py).
    Every cell trains with one torch thread, so its key and metrics do not depend on the jobs.
    """

    jobs = check_jobs(jobs)
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; known: local, ray")
    suite = load_ranking_suite(name)
    scale, names, cells = resolve_cells(suite, scale, models, methods, seeds, overrides)
    matching_file = matching_suite_path(suite, registry.suite_path(name))
    matching = load_suite_file(matching_file)["name"]  # its results folder
    first = plan(str(matching_file), scale=scale, overrides=matching_overrides)[0]  # its data at this scale
    inputs = prepare_inputs(first.dataset, first.split, NO_FEATURES, data_dir, scale, progress,
                            twin_fallback=twin_fallback)
    if inputs.banner:
        echo(f"*** {inputs.banner}")
    manifest = inputs.split.manifest_hash
    n_items = inputs.train.n_items
    extra = other_methods(results_dir, matching, manifest, names)
    if methods is None and grid_every_other(suite, scale) and extra:
        names += extra
        _, names, cells = resolve_cells(suite, scale, models, names, seeds, overrides)
    elif extra:  # stored embeddings this grid leaves out: say how to add them
        echo(f"  not in this grid, with stored embeddings on the split: {', '.join(extra)}; add them with "
             f"`python -m benchmark run --suite {suite['name']} --scale {scale} "
             f"--methods {','.join([n for n in names if n != NONE] + extra)}`")
    emb_seeds = {c.embedding_seed for c in cells if c.embedding != NONE}
    found, missing, skipped = find_embeddings(results_dir, matching, names, emb_seeds, manifest, n_items)
    if missing and fit_missing:
        unknown = sorted({m for m, _, _ in missing if m not in registry.methods()})
        if unknown:
            raise ConfigError(f"cannot fit {', '.join(unknown)}: not a registered method here; "
                              f"leave it out with --methods")
        echo(f"fitting missing embeddings first: {sorted({(m, s) for m, s, _ in missing})}")
        run_suite(str(matching_file), scale=scale, methods=sorted({m for m, _, _ in missing}),
                  seeds=sorted({s for _, s, _ in missing}), overrides=matching_overrides,
                  allow_extra_methods=allow_extra_methods, data_dir=data_dir, results_dir=results_dir,
                  tracking_uri=tracking_uri, progress=progress, jobs=jobs, executor=executor, echo=echo,
                  log_embeddings=log_embeddings, twin_fallback=twin_fallback)
        found, missing, skipped = find_embeddings(results_dir, matching, names, emb_seeds, manifest, n_items)
    if missing:
        todo = sorted({m for m, _, _ in missing})
        seeds_needed = ",".join(str(s) for s in sorted({s for _, s, _ in missing}))
        raise BenchmarkError(
            f"ranking suite {suite['name']}: no stored embeddings for {', '.join(f'{m} (seed {s})' for m, s, _ in missing)} "
            f"on split {manifest[:12]}; run `python -m benchmark run --suite {suite['matching_suite']} --scale {scale} "
            f"--methods {','.join(todo)} --seeds {seeds_needed} --data-dir {data_dir} --results-dir {results_dir}"
            f"{''.join(f' --set {o}' for o in matching_overrides)}` first, "
            f"add --fit-missing, or leave them out with --methods")
    for (name, seed), reason in skipped.items():
        dropped = [c for c in cells if c.embedding == name and c.embedding_seed == seed]
        cells = [c for c in cells if c not in dropped]
        echo(f"  SKIPPED {len(dropped)} cell(s) with {name} (seed {seed}) embeddings: {reason}")
    ctr = ctr_data(inputs, data_dir, cells[0].data)
    stored = [found.get((c.embedding, c.embedding_seed)) for c in cells]
    folders = [results_dir / suite["name"] / cell_key(suite["name"], c, ctr, s) for c, s in zip(cells, stored, strict=True)]
    pending = [(c, s) for c, s, f in zip(cells, stored, folders, strict=True) if not (f / "result.json").exists()]
    n_jobs = min(effective_jobs(jobs, len(pending))[0], max(len(pending), 1))
    echo(f"suite {suite['name']}: {len(cells)} cell(s) on {inputs.label}; CTR data {ctr.hash} "
         f"(train {len(ctr.train)}, valid {len(ctr.valid)}, test {len(ctr.test)} rows), manifest {manifest[:12]}"
         + (f"; {len(pending)} to compute, {n_jobs} at once" if executor == "local" else ""))
    results_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(results_dir, tracking_uri)
    tracker = Tracker(uri, results_dir)
    keys = {f.name for f in folders}
    if not pending or (executor == "local" and n_jobs == 1):  # here, in grid order
        records, failures = [], []
        for cell, emb, folder in zip(cells, stored, folders, strict=True):
            t0 = time.perf_counter()
            out = guarded(folder.parent, folder.name, cell_label(cell), lambda c=cell, e=emb: execute_cell(
                suite["name"], scale, c, ctr, e, inputs, results_dir, tracker, progress_factory(progress)))
            if isinstance(out, Failure):
                echo(failed_line(out))
                failures.append(out)
                continue
            echo(cell_line(cell, out, time.perf_counter() - t0))
            records.append(out)
        return RankingRun(suite=suite["name"], records=records, results_dir=results_dir, keys=keys, failures=failures)
    for cell, emb, folder in zip(cells, stored, folders, strict=True):  # finished earlier: read back here
        if (folder / "result.json").exists():
            echo(cell_line(cell, execute_cell(suite["name"], scale, cell, ctr, emb, inputs, results_dir, None,
                                              progress_factory(False)), None))
    try:  # create the experiment once, before the tasks race
        tracker.prepare(suite["name"])
    except Exception as exc:  # noqa: BLE001 - each cell records "not logged" itself
        log.warning("MLflow store %s unavailable (%s); the cells' results are kept", uri, exc)
    job = {"suite": suite["name"], "scale": scale, "dataset": first.dataset, "split": first.split,
           "data_dir": str(Path(data_dir).resolve()), "results_dir": str(Path(results_dir).resolve()),
           "ctr_hash": ctr.hash, "n_items": n_items, "tracking_uri": uri}
    run_cells_on_ray(job, pending, n_jobs if executor == "local" else None, echo)
    records = [r for r in (finished(f) for f in folders) if isinstance(r, RankingRecord)]  # grid order, for the report
    failures = read_failures(results_dir / suite["name"], {f.name for f in folders if not has_record(f)})
    return RankingRun(suite=suite["name"], records=records, results_dir=results_dir, keys=keys, failures=failures)
