"""The ranking suite (UniEmbedding Table 4): ranking model x {w/o Emb., each method's stored embeddings} x seeds.

A ranking suite file carries ``task: ranking`` and names the matching suite whose split and
stored embeddings it uses. Embeddings are read only through ``benchmark.embeddings.load_embeddings``
on the matching split's manifest; when a cell's embeddings are missing the suite stops and says
which matching runs to do (or runs them first with ``fit_missing``): no cell is dropped silently.
Each cell is stored as ``results/<suite>/<run-key>/`` (result.json, test scores and labels,
learning curve) and logged to MLflow with its validation-AUC curve.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark.config import SCALES, deep_merge, flatten, parse_override
from benchmark.devices import check_device
from benchmark.embeddings import StoredEmbeddings, load_embeddings
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.failures import Failure, guarded, read_failures
from benchmark.fsutil import atomic_write_dir
from benchmark.machine import machine_info
from benchmark.progress import progress_factory
from benchmark.ranking.models import DISPLAY, EMBEDDING_MODES, MODELS
from benchmark.ranking.train import PRETRAINED_NORMS, train_cell
from benchmark.tracking import Tracker, code_version, resolve_tracking_uri

log = logging.getLogger(__name__)
NONE = "none"  # the "w/o Emb." row
RESULT_SCHEMA = 1
TOP_KEYS = {"name", "task", "description", "scale", "matching_suite", "models", "embeddings", "every_other",
            "embedding_seed", "seeds", "data", "training", "models_config", "scales"}
DATA_KEYS = {"seed", "negatives", "max_history", "validation_fraction", "max_validation", "max_train_positives"}
TRAINING_KEYS = {"id_dim", "embedding_mode", "pretrained_norm", "epochs", "batch_size", "lr", "weight_decay", "patience",
                 "device"}
PRESET_KEYS = {"seeds", "every_other", "data", "training", "models_config"}
NO_FEATURES = {"text_encoder": None, "image_encoder": None, "batch_size": 64, "word_drop": 0.0}  # CTR needs none


def is_ranking_suite(name: str) -> bool:
    """True when the suite file (by name or path) declares ``task: ranking``."""
    from benchmark import registry

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
    from benchmark import registry

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


@dataclass
class RankingCell:
    """One cell: a ranking model fed one method's embeddings (or none) at one seed."""

    model: str
    embedding: str  # a matching-suite method name, or "none"
    seed: int
    embedding_seed: int
    data: dict
    training: dict
    scaled_by_preset: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


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


@dataclass
class RankingRecord:
    """What a finished cell leaves in result.json; the ranking report reads only these."""

    run_key: str
    suite: str
    model: str
    embedding: str
    embedding_display: str
    paper_row: str | None
    seed: int
    embedding_seed: int
    scale: str
    dataset: dict
    manifest_hash: str
    ctr: dict
    embedding_source: dict
    metrics: dict
    info: dict
    config: dict
    timings: dict = field(default_factory=dict)
    mlflow_run_id: str | None = None
    code_version: str = ""
    machine: dict = field(default_factory=dict)  # CPU and package versions (benchmark/machine.py)
    schema: int = RESULT_SCHEMA

    @classmethod
    def read(cls, folder: Path) -> RankingRecord:
        data = json.loads((folder / "result.json").read_text())
        if data.get("schema") != RESULT_SCHEMA:
            raise BenchmarkError(f"{folder}/result.json: ranking result schema {data.get('schema')} is not {RESULT_SCHEMA}")
        return cls(**data)


def _cell_key(suite: str, cell: RankingCell, ctr_hash: str, emb_sha: str) -> str:
    payload = json.dumps({"suite": suite, **cell.as_dict(), "ctr": ctr_hash, "emb": emb_sha}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _matching_record(stored: StoredEmbeddings) -> dict:
    return json.loads((stored.folder / "result.json").read_text())


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


def cell_label(cell: RankingCell) -> str:
    return f"{DISPLAY[cell.model]} + {cell.embedding} seed {cell.seed}"


def grid_every_other(suite: dict, scale: str) -> bool:
    """Whether the grid adds every other method with stored embeddings; the scale preset's value wins."""
    preset = (suite.get("scales") or {}).get(scale) or {}
    return bool(preset.get("every_other", suite.get("every_other", True)))


def ctr_data(inputs: Any, data_dir: Path, d: dict) -> Any:
    """The one CTR dataset of a grid, from the data-dir cache (built and cached on first use)."""
    from benchmark.ranking.data import cached_ctr

    return cached_ctr(inputs.split, inputs.train, Path(data_dir) / ".cache" / "ctr", negatives=int(d["negatives"]),
                      max_history=int(d["max_history"]), validation_fraction=float(d["validation_fraction"]),
                      max_validation=d.get("max_validation"), max_train_positives=d.get("max_train_positives"),
                      seed=int(d["seed"]))


def embeddings_sha(stored: StoredEmbeddings | None) -> str:
    """The sha256 of a cell's embeddings as their matching run recorded it ("" = w/o Emb.)."""
    return "" if stored is None else _matching_record(stored)["embeddings"]["sha256"]


def cell_key(suite: str, cell: RankingCell, ctr: Any, stored: StoredEmbeddings | None) -> str:
    """A cell's run key: its config, the CTR data and the embeddings' checksum."""
    return _cell_key(suite, cell, ctr.hash, embeddings_sha(stored))


def cell_line(cell: RankingCell, record: RankingRecord, took: float | None) -> str:
    """The line echoed for a finished (or read back) cell."""
    when = "finished earlier" if record.timings.get("cached") else (
        f"{took:.1f}s" if took is not None else f"fit {record.timings.get('fit_s', 0):.1f}s")
    return (f"  {DISPLAY[cell.model]:<9} {record.embedding_display:<14} seed {cell.seed}: "
            f"AUC {record.metrics['auc']:.4f}  logloss {record.metrics['logloss']:.4f}  "
            f"(best epoch {record.info.get('best_epoch')}, {when}, key {record.run_key})")


def run_ranking_suite(name: str, *, scale: str | None = None, models: list[str] | None = None,
                      methods: list[str] | None = None, seeds: list[int] | None = None,
                      overrides: tuple[str, ...] = (), data_dir: Path = Path("data"),
                      results_dir: Path = Path("results"), tracking_uri: str | None = None,
                      fit_missing: bool = False, jobs: int | str = 1, executor: str = "local",
                      progress: bool = True, echo: Callable[[str], None] = print) -> RankingRun:
    """Run (or resume) every cell of a ranking suite and return their records, in grid order.

    ``jobs``: cells at once on this machine (``"auto"`` = min(cores, cells to compute)); an
    effective 1 runs every cell here, in grid order, without Ray. More jobs (or
    ``executor="ray"``, a cluster) make each pending cell a Ray task (benchmark/ranking/parallel.py).
    Every cell trains with one torch thread, so its key and metrics do not depend on the jobs.
    """
    from benchmark.inputs import prepare_inputs
    from benchmark.runner import check_jobs, effective_jobs, plan, run_suite

    jobs = check_jobs(jobs)
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; known: local, ray")
    suite = load_ranking_suite(name)
    scale, names, cells = resolve_cells(suite, scale, models, methods, seeds, overrides)
    matching = suite["matching_suite"]
    first = plan(matching, scale=scale)[0]  # the matching suite's dataset and split at this scale
    inputs = prepare_inputs(first.dataset, first.split, NO_FEATURES, data_dir, scale, progress)
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
        from benchmark import registry

        unknown = sorted({m for m, _, _ in missing if m not in registry.methods()})
        if unknown:
            raise ConfigError(f"cannot fit {', '.join(unknown)}: not a registered method here; "
                              f"leave it out with --methods")
        echo(f"fitting missing embeddings first: {sorted({(m, s) for m, s, _ in missing})}")
        run_suite(matching, scale=scale, methods=sorted({m for m, _, _ in missing}),
                  seeds=sorted({s for _, s, _ in missing}), data_dir=data_dir, results_dir=results_dir,
                  tracking_uri=tracking_uri, progress=progress, jobs=jobs, executor=executor, echo=echo)
        found, missing, skipped = find_embeddings(results_dir, matching, names, emb_seeds, manifest, n_items)
    if missing:
        todo = sorted({m for m, _, _ in missing})
        seeds_needed = ",".join(str(s) for s in sorted({s for _, s, _ in missing}))
        raise BenchmarkError(
            f"ranking suite {suite['name']}: no stored embeddings for {', '.join(f'{m} (seed {s})' for m, s, _ in missing)} "
            f"on split {manifest[:12]}; run `python -m benchmark run --suite {matching} --scale {scale} "
            f"--methods {','.join(todo)} --seeds {seeds_needed} --results-dir {results_dir}` first, "
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
                echo(f"  {out.label}: FAILED - {out.reason} (traceback: {out.log})")
                failures.append(out)
                continue
            echo(cell_line(cell, out, time.perf_counter() - t0))
            records.append(out)
        return RankingRun(suite=suite["name"], records=records, results_dir=results_dir, keys=keys, failures=failures)
    from benchmark.ranking.parallel import run_cells_on_ray

    for cell, emb, folder in zip(cells, stored, folders, strict=True):  # finished earlier: read back here
        if (folder / "result.json").exists():
            echo(cell_line(cell, execute_cell(suite["name"], scale, cell, ctr, emb, inputs, results_dir, None,
                                              progress_factory(False)), None))
    try:  # create the experiment once, before the tasks race
        tracker.experiment_id(suite["name"])
    except Exception as exc:  # noqa: BLE001 - each cell records "not logged" itself
        log.warning("MLflow store %s unavailable (%s); the cells' results are kept", uri, exc)
    job = {"suite": suite["name"], "scale": scale, "dataset": first.dataset, "split": first.split,
           "data_dir": str(Path(data_dir).resolve()), "results_dir": str(Path(results_dir).resolve()),
           "ctr_hash": ctr.hash, "n_items": n_items, "tracking_uri": uri}
    run_cells_on_ray(job, pending, n_jobs if executor == "local" else None, echo)
    records = [RankingRecord.read(f) for f in folders if (f / "result.json").exists()]  # grid order, for the report
    failures = read_failures(results_dir / suite["name"], {f.name for f in folders if not (f / "result.json").exists()})
    return RankingRun(suite=suite["name"], records=records, results_dir=results_dir, keys=keys, failures=failures)


def execute_cell(suite: str, scale: str, cell: RankingCell, ctr: Any, stored: StoredEmbeddings | None, inputs: Any,
                 results_dir: Path, tracker: Tracker | None, progress: Callable[..., Any]) -> RankingRecord:
    """Train one cell and store it atomically (a finished cell is read back, not retrained)."""
    emb_sha = embeddings_sha(stored)
    key = _cell_key(suite, cell, ctr.hash, emb_sha)
    folder = results_dir / suite / key
    if (folder / "result.json").exists():
        record = RankingRecord.read(folder)
        record.timings = {**record.timings, "cached": True}
        return record
    if stored is None:
        display, paper_row, source = "w/o Emb.", "none", {}
    else:
        rec = _matching_record(stored)
        display, paper_row = stored.display or stored.method, rec.get("paper_column")
        source = {"suite": stored.suite, "method": stored.method, "seed": stored.seed,
                  "folder": str(Path(stored.folder).resolve()),  # the same string from the driver or a Ray worker
                  "sha256": emb_sha, "shape": list(stored.vectors.shape), "run_key": rec.get("run_key")}
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_cell(cell.model, ctr, None if stored is None else stored.vectors, cell.training, cell.seed,
                            progress=progress, log=log.debug)
    finally:
        torch.set_num_threads(previous)
    record = RankingRecord(
        run_key=key, suite=suite, model=cell.model, embedding=cell.embedding, embedding_display=display,
        paper_row=paper_row, seed=cell.seed, embedding_seed=cell.embedding_seed, scale=scale,
        dataset={"name": inputs.dataset.name, "label": inputs.label, "synthetic": inputs.synthetic,
                 "fingerprint": inputs.dataset.fingerprint},
        manifest_hash=inputs.split.manifest_hash, ctr=ctr.describe(), embedding_source=source,
        metrics=result.metrics, info=result.info, config=cell.as_dict(),
        timings={"fit_s": result.info["fit_s"]}, code_version=code_version(), machine=machine_info())
    tags = {"suite": suite, "task": "ranking", "model": cell.model, "embedding": cell.embedding,
            "embedding_display": display, "seed": str(cell.seed), "scale": scale, "run_key": key,
            "dataset": inputs.dataset.name, "dataset_label": inputs.label,
            "synthetic": "true" if inputs.synthetic else "false", "manifest_hash": inputs.split.manifest_hash,
            "ctr_hash": ctr.hash, "code_version": record.code_version,
            "mlflow.runName": f"{cell.model}-{cell.embedding}-s{cell.seed}"}
    if source:
        tags.update({"embeddings.folder": source["folder"], "embeddings.sha256": emb_sha})

    def write(tmp: Path) -> None:
        (tmp / "config.yaml").write_text(yaml.safe_dump(cell.as_dict(), sort_keys=False))
        np.save(tmp / "test_scores.npy", result.test_scores.astype(np.float32))
        np.save(tmp / "test_labels.npy", ctr.test.label.astype(np.int8))
        lines = ["name,step,value"] + [f"{n},{s},{v!r}" for n, v, s in result.curves]
        (tmp / "curves.csv").write_text("\n".join(lines) + "\n")
        if tracker is not None:
            metrics = {"test": {k: v for k, v in result.metrics.items() if "/" not in k and k != "valid_auc"},
                       "valid": {"best_auc": result.metrics["valid_auc"]}}
            for group in ("overlapped", "unseen"):
                metrics[f"test/{group}"] = {k.split("/")[1]: v for k, v in result.metrics.items()
                                            if k.startswith(group + "/")}
            # Results first, tracking second: a store that is down costs the MLflow run, never the cell.
            record.mlflow_run_id, reason = tracker.try_log_run(
                experiment=suite, run_name=tags["mlflow.runName"],
                params={**cell.as_dict(), "run_key": key, "ctr": ctr.describe()}, tags=tags, metrics=metrics,
                curves=result.curves, artefacts=sorted(tmp.iterdir()))
            if record.mlflow_run_id is None:
                log.warning("%s: not logged to MLflow (%s); the cell's results are kept", key, reason)
        (tmp / "result.json").write_text(json.dumps(asdict(record), indent=1, default=str))

    atomic_write_dir(folder, write)
    return record
