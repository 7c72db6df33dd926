"""The record a finished matching run leaves in ``result.json``: what reports, sync and the
downstream tasks read (never the run's code).

Schema 2; schema-1 records (no embeddings, no next-item metrics) read with defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import BenchmarkError

RESULT_SCHEMA = 2
_READABLE_SCHEMAS = (1, 2)  # v1 records lack embeddings and next-item metrics; they read with defaults


@dataclass
class RunRecord:
    """What a finished (or skipped) run leaves in result.json; reports read only these."""

    run_key: str
    suite: str
    method: str
    display: str
    paper_column: str | None
    seed: int
    scale: str
    status: str  # "done" | "skipped" | "failed" (failed: never in result.json, see benchmark/failures.py)
    reason: str = ""
    dataset: dict = field(default_factory=dict)
    manifest_hash: str = ""
    encoders: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # group -> metric -> value (percent) + "n"
    next_item_metrics: dict = field(default_factory=dict)  # same shape; only methods with user_embeddings
    embeddings: dict = field(default_factory=dict)  # file, sha256, shape, ids_file, ids_sha256
    method_stats: dict = field(default_factory=dict)  # the method's own ``stats`` (epochs, what it held out, ...)
    timings: dict = field(default_factory=dict)
    #: the evaluation settings the ranks were computed with (rank_cap: ranks above it are stored as cap + 1)
    evaluation: dict = field(default_factory=dict)
    mlflow_run_id: str | None = None
    tracking: dict = field(default_factory=dict)  # status "logged" | "not logged" | "pending", uri, run_id/reason
    machine: dict = field(default_factory=dict)  # CPU, instruction sets, BLAS, library versions (benchmark/machine.py)
    code_version: str = ""
    tags: dict = field(default_factory=dict)
    #: the training budget (benchmark/reporting/budget.py): optimizer_steps, examples_seen, epochs,
    #: best_epoch, stop_reason, fit_wall_s, fit_cpu_s, curve; {} in records made before it was kept
    training: dict = field(default_factory=dict)
    schema: int = RESULT_SCHEMA

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        data = json.loads((folder / "result.json").read_text())
        if data.get("schema") not in _READABLE_SCHEMAS:
            raise BenchmarkError(f"{folder}/result.json: result schema {data.get('schema')} is not {RESULT_SCHEMA}")
        data["schema"] = RESULT_SCHEMA
        return cls(**data)
