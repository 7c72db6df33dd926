"""MLflow tracking: every run of the grid becomes one MLflow run.

Default store: sqlite under ``results/`` with artefacts beside it; ``--tracking-uri`` or
``MLFLOW_TRACKING_URI`` points at a shared server instead (the scale-out path: one MLflow
server for many machines). The local results store (``results/<suite>/<run-key>/``) is the
source of truth for reports; MLflow is the browsable log.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.config import flatten

log = logging.getLogger(__name__)
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def resolve_tracking_uri(results_dir: Path, uri: str | None = None) -> str:
    """--tracking-uri > $MLFLOW_TRACKING_URI > sqlite:///<results>/mlflow.db."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def metric_key(group: str, metric: str) -> str:
    """'unseen/domain=Books' + 'HR@10' -> 'unseen/domain_Books/HR_10' (MLflow's allowed charset)."""
    return _KEY_BAD.sub("_", f"{group}/{metric.replace('@', '_')}")


@cache
def code_version() -> str:
    """Package version plus the git commit of the checkout (and '+dirty' when modified)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"


class Tracker:
    """Thin wrapper over the MLflow client: one experiment per suite, one run per grid cell."""

    def __init__(self, uri: str, results_dir: Path):
        import mlflow

        self.uri = uri
        self.results_dir = results_dir
        self._mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        self.client = mlflow.MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:"):
            location = (self.results_dir / "mlartifacts" / name).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def log_run(
        self,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        metrics: Mapping[str, Mapping[str, float]],
        curves: list[tuple[str, float, int]],
        artefacts: list[Path],
    ) -> str:
        """Log a finished run in one go (params, tags, grouped metrics, curves, files); return its id."""
        from mlflow.entities import Metric, Param

        exp_id = self.experiment_id(experiment)
        run = self.client.create_run(exp_id, run_name=run_name, tags=dict(tags))
        run_id = run.info.run_id
        try:
            flat = {k: ("null" if v is None else str(v))[:6000] for k, v in flatten(dict(params)).items()}
            param_list = [Param(k[:250], v) for k, v in sorted(flat.items())]
            values = []
            for group, by_metric in metrics.items():
                for name, value in by_metric.items():
                    if value == value:  # skip NaN (empty groups)
                        values.append(Metric(metric_key(group, name), float(value), 0, 0))
            for name, value, step in curves:
                values.append(Metric(_KEY_BAD.sub("_", name), float(value), 0, int(step)))
            for start in range(0, len(param_list), 100):  # MLflow's per-request limits
                self.client.log_batch(run_id, params=param_list[start:start + 100])
            for start in range(0, len(values), 1000):
                self.client.log_batch(run_id, metrics=values[start:start + 1000])
            for path in artefacts:
                self.client.log_artifact(run_id, str(path))
        except Exception:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def find_run(self, experiment: str, run_key: str) -> str | None:
        """The finished MLflow run already logged for a run key (so a resumed suite logs once)."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        runs = self.client.search_runs([found.experiment_id], filter_string=f"tags.run_key = '{run_key}'",
                                       max_results=1)
        return runs[0].info.run_id if runs else None
