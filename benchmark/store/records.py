"""One record format for every task: what a finished run leaves in its folder's ``result.json``.

Every record has the same envelope (:class:`Record`: ``task``, run key, suite, seed, scale,
status, dataset, manifest hash, metrics, training budget, timings, tracking outcome, machine, code
version) and its task's own fields: :class:`RunRecord` (matching), :class:`RankingRecord` (a CTR
cell), :class:`TransferRecord` (a transfer condition). Reports, ``sync`` and the engine read only
these, never the run's code.

Schema 3. Older folders stay readable: matching schema 1/2 and ranking schema 1 ``result.json``
(no ``task`` field) and transfer's ``record.json`` read with defaults, so run keys and results made
by earlier versions are reused, not recomputed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.fsutil import verify_folder

RESULT_FILE = "result.json"
#: Transfer conditions written before schema 3 kept their record here.
LEGACY_RECORD_FILE = "record.json"
RESULT_SCHEMA = 3
TASKS = ("matching", "ranking", "transfer")
log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Record:
    """The envelope every task's record has; reports and sync read these fields for any task."""

    task: str
    run_key: str
    suite: str
    seed: int
    scale: str
    status: str = "done"  # "done" | "skipped" | "failed" (failed: never on disk, see benchmark/grid/failures.py)
    reason: str = ""
    dataset: dict = field(default_factory=dict)  # name, label, synthetic, fingerprint
    manifest_hash: str = ""
    metrics: dict = field(default_factory=dict)  # the task's headline metrics
    #: the training budget (benchmark/reporting/budget.py): optimizer_steps, examples_seen, epochs,
    #: best_epoch, stop_reason, fit_wall_s, fit_cpu_s, curve; {} in records made before it was kept
    training: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    mlflow_run_id: str | None = None
    tracking: dict = field(default_factory=dict)  # status "logged" | "not logged" | "pending", uri, run_id/reason
    machine: dict = field(default_factory=dict)  # CPU, instruction sets, BLAS, library versions (benchmark/machine.py)
    code_version: str = ""
    tags: dict = field(default_factory=dict)
    schema: int = RESULT_SCHEMA

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, folder: Path) -> None:
        """Write ``result.json`` into ``folder`` (a run's temporary folder: the engine renames it whole)."""
        (Path(folder) / RESULT_FILE).write_text(json.dumps(self.as_dict(), indent=1, default=str))

    @classmethod
    def read(cls, folder: Path) -> Any:
        """The record in ``folder``, which must be of this class's task (one-line error otherwise)."""
        record = read_record(folder)
        if not isinstance(record, cls):
            raise BenchmarkError(f"{record_path(folder)}: a {record.task} record, not a {cls.__name__}")
        return record


@dataclass(kw_only=True)
class RunRecord(Record):
    """A matching run: one method fitted at one seed, scored by item-to-item matching (and next-item)."""

    task: str = "matching"
    method: str
    display: str
    paper_column: str | None = None
    encoders: dict = field(default_factory=dict)
    next_item_metrics: dict = field(default_factory=dict)  # same shape as metrics; only methods with user_embeddings
    embeddings: dict = field(default_factory=dict)  # file, sha256, shape, ids_file, ids_sha256
    method_stats: dict = field(default_factory=dict)  # the method's own ``stats`` (epochs, what it held out, ...)
    #: the evaluation settings the ranks were computed with (rank_cap: ranks above it are stored as cap + 1)
    evaluation: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class RankingRecord(Record):
    """A ranking cell (Table 4): a CTR model fed one method's stored embeddings (or none) at one seed."""

    task: str = "ranking"
    model: str
    embedding: str
    embedding_display: str
    paper_row: str | None = None
    embedding_seed: int = 0
    ctr: dict = field(default_factory=dict)
    embedding_source: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class TransferRecord(Record):
    """A transfer condition (TransRec Tables 6-9): one method, source and target shares, one seed."""

    task: str = "transfer"
    condition: dict
    display: str
    transfer: dict = field(default_factory=dict)
    method_config: dict = field(default_factory=dict)
    scaled_by_preset: dict = field(default_factory=dict)
    target_cases: int = 0
    target_train_sequences: int = 0
    next_item: dict = field(default_factory=dict)  # group -> metric -> value
    item_to_item: dict = field(default_factory=dict)
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    run_threads: int = 1


RECORD_TYPES: dict[str, type[Record]] = {"matching": RunRecord, "ranking": RankingRecord, "transfer": TransferRecord}


def record_path(folder: Path) -> Path:
    """A finished folder's record: ``result.json``, or an older transfer condition's ``record.json``."""
    folder = Path(folder)
    new = folder / RESULT_FILE
    legacy = folder / LEGACY_RECORD_FILE
    return legacy if not new.is_file() and legacy.is_file() else new


def has_record(folder: Path) -> bool:
    """Whether ``folder`` holds a record (finished, unless the record turns out unreadable)."""
    return record_path(folder).is_file()


def read_record_dict(folder: Path) -> dict[str, Any]:
    """The record as stored, upgraded to schema 3 (a ``task`` field and the common envelope).

    An unreadable record (truncated, not JSON, not an object, an unknown task or schema) is one
    BenchmarkError naming the file; the engine treats such a folder as not finished.
    """
    path = record_path(folder)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BenchmarkError(f"{path}: unreadable record ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: unreadable record (not a JSON object)")
    if path.name == LEGACY_RECORD_FILE:
        data = _upgrade_transfer(data)
    task = data.get("task") or ("ranking" if "embedding_source" in data else "matching")
    if task not in RECORD_TYPES:
        raise BenchmarkError(f"{path}: unknown task {task!r} (known: {', '.join(TASKS)})")
    schema = data.get("schema")
    if schema not in (1, 2, RESULT_SCHEMA):
        raise BenchmarkError(f"{path}: result schema {schema} is not {RESULT_SCHEMA} (made by a newer version?)")
    return {**data, "task": task, "schema": RESULT_SCHEMA}


def read_record(folder: Path) -> Record:
    """The typed record of ``folder`` (any task); one-line BenchmarkError when it cannot be read."""
    data = read_record_dict(folder)
    cls = RECORD_TYPES[data["task"]]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BenchmarkError(f"{record_path(folder)}: unknown {data['task']} record field(s) {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise BenchmarkError(f"{record_path(folder)}: incomplete {data['task']} record ({exc})") from None


def _upgrade_transfer(data: dict[str, Any]) -> dict[str, Any]:
    """A transfer ``record.json`` (before schema 3) in the common envelope."""
    data = dict(data)
    cond = data.get("condition") or {}
    data.setdefault("run_key", data.pop("key", ""))
    data.pop("key", None)
    data.setdefault("seed", cond.get("seed", 0))
    data.setdefault("manifest_hash", (data.get("dataset") or {}).get("manifest_hash", ""))
    data.setdefault("training", (data.get("stats") or {}).get("training") or {})
    data.setdefault("timings", {"fit_s": data.get("seconds", 0.0)})
    data.setdefault("schema", RESULT_SCHEMA)
    data["task"] = "transfer"
    return data


def finished_records(suite_dir: Path, cls: type[Record]) -> list[Any]:
    """The readable ``cls`` records directly under ``suite_dir``, oldest first (by record mtime).

    Dot-folders are unfinished temporary writes. An unreadable record (truncated, corrupt) is
    named in one warning and left out: reports skip it and ``run`` computes it again.
    """
    suite_dir = Path(suite_dir)
    if not suite_dir.is_dir():
        return []
    folders = [p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and has_record(p)]
    out = []
    for folder in sorted(folders, key=lambda p: record_path(p).stat().st_mtime):
        try:
            record = read_record(folder)
        except BenchmarkError as exc:
            log.warning("%s; left out (rerun `run` to recompute it)", exc)
            continue
        damaged = verify_folder(folder)
        if damaged is not None:
            log.warning("%s; left out (rerun `run` to recompute it)", damaged)
            continue
        if isinstance(record, cls):
            out.append(record)
    return out
