"""One ranking cell: a ranking model fed one method's stored embeddings (or none) at one seed.

Its key hashes the cell's config, the CTR data and the embeddings' checksum; it trains with one
torch thread (so its key and numbers do not depend on ``--jobs``), stores its folder atomically,
then logs to MLflow. :func:`remote_cell` is the same cell as a Ray task (benchmark/tasks/ranking/parallel.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmark.errors import BenchmarkError
from benchmark.grid.engine import KeyedRun, elapsed_text, run_keyed
from benchmark.grid.failures import Failure, failed_line, guarded
from benchmark.inputs import prepare_inputs
from benchmark.machine import machine_info
from benchmark.progress import configure_logging, progress_factory
from benchmark.store.embeddings import StoredEmbeddings, read_stored
from benchmark.store.records import RankingRecord
from benchmark.store.sync import TRACKING_FILE, write_curves
from benchmark.store.tracking import Tracker, code_version
from benchmark.tasks.ranking.data import cached_ctr
from benchmark.tasks.ranking.models import DISPLAY
from benchmark.tasks.ranking.train import GROUPS, train_cell

log = logging.getLogger(__name__)
NO_FEATURES = {"text_encoder": None, "image_encoder": None, "batch_size": 64, "word_drop": 0.0}  # CTR needs none


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


def key_of(suite: str, cell: RankingCell, ctr_hash: str, emb_sha: str) -> str:
    payload = json.dumps({"suite": suite, **cell.as_dict(), "ctr": ctr_hash, "emb": emb_sha}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _matching_record(stored: StoredEmbeddings) -> dict:
    return json.loads((stored.folder / "result.json").read_text())


def cell_label(cell: RankingCell) -> str:
    return f"{DISPLAY[cell.model]} + {cell.embedding} seed {cell.seed}"



def ctr_data(inputs: Any, data_dir: Path, d: dict) -> Any:
    """The one CTR dataset of a grid, from the data-dir cache (built and cached on first use)."""
    return cached_ctr(inputs.split, inputs.train, Path(data_dir) / ".cache" / "ctr", negatives=int(d["negatives"]),
                      max_history=int(d["max_history"]), validation_fraction=float(d["validation_fraction"]),
                      max_validation=d.get("max_validation"), max_train_positives=d.get("max_train_positives"),
                      seed=int(d["seed"]))


def embeddings_sha(stored: StoredEmbeddings | None) -> str:
    """The sha256 of a cell's embeddings as their matching run recorded it ("" = w/o Emb.)."""
    return "" if stored is None else _matching_record(stored)["embeddings"]["sha256"]


def cell_key(suite: str, cell: RankingCell, ctr: Any, stored: StoredEmbeddings | None) -> str:
    """A cell's run key: its config, the CTR data and the embeddings' checksum."""
    return key_of(suite, cell, ctr.hash, embeddings_sha(stored))


def cell_line(cell: RankingCell, record: RankingRecord, took: float | None) -> str:
    """The line echoed for a finished (or read back) cell."""
    when = elapsed_text(record, took)
    return (f"  {DISPLAY[cell.model]:<9} {record.embedding_display:<14} seed {cell.seed}: "
            f"AUC {record.metrics['auc']:.4f}  logloss {record.metrics['logloss']:.4f}  "
            f"(best epoch {record.info.get('best_epoch')}, {when}, key {record.run_key})")


def execute_cell(suite: str, scale: str, cell: RankingCell, ctr: Any, stored: StoredEmbeddings | None, inputs: Any,
                 results_dir: Path, tracker: Tracker | None, progress: Callable[..., Any]) -> RankingRecord:
    """Train one cell and store it on the engine (a finished cell is read back, not retrained)."""
    emb_sha = embeddings_sha(stored)
    key = key_of(suite, cell, ctr.hash, emb_sha)
    where = KeyedRun(results_dir, suite, key, results_dir / suite / key)
    record, _ = run_keyed(where, lambda tmp: _compute_cell(suite, scale, cell, ctr, stored, emb_sha, key, tmp, inputs,
                                                          progress), tracker)
    assert isinstance(record, RankingRecord)
    return record


def _compute_cell(suite: str, scale: str, cell: RankingCell, ctr: Any, stored: StoredEmbeddings | None,
                  emb_sha: str, key: str, tmp: Path, inputs: Any, progress: Callable[..., Any]) -> None:
    """Train the cell and write its complete folder into ``tmp`` (tracking.json says what to log)."""
    if stored is None:
        display, paper_row, source = "w/o Emb.", "none", {}
    else:
        rec = _matching_record(stored)
        display, paper_row = stored.display or stored.method, rec.get("paper_column")
        source = {"suite": stored.suite, "method": stored.method, "seed": stored.seed,
                  "folder": str(Path(stored.folder).resolve()),  # the same string from the driver or a Ray worker
                  "sha256": emb_sha, "shape": list(stored.vectors.shape), "run_key": rec.get("run_key"),
                  # did the method that made these embeddings converge? (C9 rests on it too)
                  "stop_reason": str((rec.get("training") or {}).get("stop_reason") or "not recorded")}
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
                 "fingerprint": inputs.dataset.fingerprint, "paper_data": inputs.paper_data},
        manifest_hash=inputs.split.manifest_hash, ctr=ctr.describe(), embedding_source=source,
        metrics=result.metrics, info=result.info, config=cell.as_dict(), training=dict(result.info.get("training") or {}),
        timings={"fit_s": result.info["fit_s"]}, code_version=code_version(), machine=machine_info(),
        tracking={"status": "pending"})
    tags = {"suite": suite, "task": "ranking", "model": cell.model, "embedding": cell.embedding,
            "embedding_display": display, "seed": str(cell.seed), "scale": scale, "run_key": key,
            "dataset": inputs.dataset.name, "dataset_label": inputs.label,
            "synthetic": "true" if inputs.synthetic else "false", "manifest_hash": inputs.split.manifest_hash,
            "ctr_hash": ctr.hash, "code_version": record.code_version,
            "mlflow.runName": f"{cell.model}-{cell.embedding}-s{cell.seed}"}
    if source:
        tags.update({"embeddings.folder": source["folder"], "embeddings.sha256": emb_sha})

    metrics = {"test": {k: v for k, v in result.metrics.items() if "/" not in k and k != "valid_auc"},
               "valid": {"best_auc": result.metrics["valid_auc"]}}
    for group in GROUPS:
        metrics[f"test/{group}"] = {k.split("/")[1]: v for k, v in result.metrics.items() if k.startswith(group + "/")}

    (tmp / "config.yaml").write_text(yaml.safe_dump(cell.as_dict(), sort_keys=False))
    np.save(tmp / "test_scores.npy", result.test_scores.astype(np.float32))
    np.save(tmp / "test_labels.npy", ctr.test.label.astype(np.int8))
    write_curves(tmp / "curves.csv", result.curves)
    (tmp / TRACKING_FILE).write_text(json.dumps({
        "experiment": suite, "run_name": tags["mlflow.runName"], "tags": tags, "metrics": metrics,
        "params": {**cell.as_dict(), "run_key": key, "ctr": ctr.describe()}}, indent=1, default=str))
    record.write(tmp)


def _remote_cell(job: dict[str, Any], cell: dict[str, Any], emb_folder: str | None, emb_sha: str) -> str:
    """Rebuild the inputs and CTR data from the data-dir caches, train one cell, return its line."""
    configure_logging()
    data_dir, results_dir = Path(job["data_dir"]), Path(job["results_dir"])
    rcell = RankingCell(**cell)
    inputs = prepare_inputs(job["dataset"], job["split"], NO_FEATURES, data_dir, job["scale"], progress=False)
    ctr = ctr_data(inputs, data_dir, rcell.data)
    if ctr.hash != job["ctr_hash"]:
        raise BenchmarkError(f"ranking task: CTR data {ctr.hash} in this worker, {job['ctr_hash']} in the driver "
                             f"(is {data_dir} shared?)")
    stored = None
    if emb_folder is not None:
        stored = read_stored(Path(emb_folder))  # verifies the files against their checksums
        if embeddings_sha(stored) != emb_sha or stored.vectors.shape[0] != job["n_items"]:
            raise BenchmarkError(f"{emb_folder}: not the embeddings the driver chose ({emb_sha[:12]}, "
                                 f"{job['n_items']} rows)")
    tracker = Tracker(job["tracking_uri"], results_dir)
    t0 = time.perf_counter()
    record = execute_cell(job["suite"], job["scale"], rcell, ctr, stored, inputs, results_dir, tracker,
                          progress_factory(False))
    return cell_line(rcell, record, time.perf_counter() - t0)


def remote_cell(job: dict[str, Any], cell: dict[str, Any], key: str, emb_folder: str | None, emb_sha: str) -> str:
    """One cell as a Ray task, at the run boundary: its line, or its FAILED line (the failure recorded)."""
    out = guarded(Path(job["results_dir"]) / job["suite"], key, cell_label(RankingCell(**cell)),
                  lambda: _remote_cell(job, cell, emb_folder, emb_sha))
    return failed_line(out) if isinstance(out, Failure) else out
