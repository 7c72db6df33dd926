"""MLflow tracking: every run of the grid becomes one MLflow run -- after its result is safe.

Default store: sqlite under ``results/`` with artefacts beside it; ``--tracking-uri`` or
``MLFLOW_TRACKING_URI`` points at a shared server instead (the scale-out path: one MLflow
server for many machines). The local results store (``results/<suite>/<run-key>/``) is the
source of truth for reports; MLflow is the browsable log. Logging is therefore second: it is
tried briefly (short connect/read timeouts, few retries), a failure is recorded in the run's
result.json as "not logged", and ``python -m benchmark sync`` logs it later. A run key is logged
once, ever (a finished MLflow run with its ``run_key`` tag is reused; RUNNING leftovers of killed
processes are closed as KILLED).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.config import flatten
from benchmark.fsutil import file_lock

log = logging.getLogger(__name__)
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")
#: MLflow's HTTP client defaults retry for ~4 minutes with a 120 s timeout per request; a tracking
#: outage must cost seconds. A user's own environment values win (setdefault).
QUICK_HTTP = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",  # seconds, requests' connect and read timeout
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
ATTEMPTS = 2  # our own tries per run (each with MLflow's single quick retry)


def probe_server(uri: str) -> str | None:
    """None when an http(s) tracking server answers within one timeout, else why not.

    One request, no retry: a refused, unreachable or hanging server costs at most
    MLFLOW_HTTP_REQUEST_TIMEOUT seconds here, instead of MLflow's several retried requests per call.
    Any HTTP answer (even an error status) means the server is up. Other stores are not probed.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", QUICK_HTTP["MLFLOW_HTTP_REQUEST_TIMEOUT"]))
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
        reason = getattr(exc, "reason", exc)
        return f"{uri} did not answer within {timeout:g} s ({type(reason).__name__}: {reason})"


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


# what a run reads: editing a report, a doc or a test leaves the code version clean
CODE_PATHS = ("benchmark", "methods", "datasets", "pyproject.toml", "constraints.txt")
#: the checkout this package runs from (benchmark/store/tracking.py -> the repository root)
REPO_ROOT = Path(__file__).resolve().parents[2]


@cache
def code_version() -> str:
    """Package version plus the git commit of the checkout (and '.dirty' when its code is modified)."""
    return checkout_version(REPO_ROOT)


def checkout_version(root: Path) -> str:
    """``<version>+g<sha>``, with ``.dirty`` only when a tracked file under CODE_PATHS differs.

    Reports regenerated in a clone rewrite tracked files under ``reports/``; they are outputs,
    not code, so they must not mark the runs made there as made by modified code.
    """
    sha = _git(root, "rev-parse", "--short", "HEAD")
    if not sha:
        return __version__
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"


def _git(root: Path, *args: str) -> str | None:
    """``git args`` in ``root``: its stdout, or None when git is absent, fails or hangs."""
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_changes(versions: list[str], root: Path | None = None, shown: int = 8) -> str:
    """One sentence for a report whose runs were made by several code versions: what changed between
    them in the code a run reads (CODE_PATHS), from this checkout's git history; "" for one version.

    Run keys hash the config, the split and the data, not the code, so a report built from runs of
    two versions must say what differs between them rather than leave the reader to guess.
    """
    root = root or REPO_ROOT
    shas = {v: v.partition("+g")[2].removesuffix(".dirty") for v in versions}
    commits = sorted({sha for sha in shas.values() if sha})
    if len(commits) < 2:
        changed = ""
    else:
        stamps = {sha: _git(root, "show", "-s", "--format=%ct", sha) for sha in commits}
        if any(stamp is None or not stamp.isdigit() for stamp in stamps.values()):
            changed = (f"what changed between {', '.join(commits)} cannot be checked here "
                       "(this checkout's git history does not hold them)")
        else:
            ordered = sorted(commits, key=lambda sha: int(stamps[sha] or 0))
            parts = []
            for a, b in zip(ordered, ordered[1:], strict=False):
                names = (_git(root, "diff", "--name-only", a, b, "--", *CODE_PATHS) or "").split()
                more = f" and {len(names) - shown} more" if len(names) > shown else ""
                parts.append(f"between {a} and {b} the code a run reads changed in {len(names)} file(s)"
                             + (f": {', '.join(names[:shown])}{more}" if names else ""))
            changed = "; ".join(parts)
    dirty = sorted(v for v in versions if v.endswith(".dirty"))
    if dirty:
        changed += ("; " if changed else "") + (f"{', '.join(dirty)} ran with uncommitted changes to that code "
                                                "(not recorded)")
    return changed[:1].upper() + changed[1:] + "." if changed else ""


class TrackingError(Exception):
    """MLflow could not be reached or written; the run's result is kept and marked "not logged"."""


class Tracker:
    """Thin wrapper over the MLflow client: one experiment per suite, one run per run key.

    The store is opened lazily, under a file lock for sqlite stores (schema creation and
    migration happen once even when processes start together). After one failure the tracker
    is ``down`` and the rest of the grid does not wait for it again.
    """

    def __init__(self, uri: str, results_dir: Path):
        for key, value in QUICK_HTTP.items():
            os.environ.setdefault(key, value)
        self.uri = uri
        self.results_dir = Path(results_dir)
        self.down: str | None = None
        self._client = None
        self._depth = 0

    @property
    def local(self) -> bool:
        return self.uri.startswith("sqlite:")

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Serialise sqlite store access between processes (re-entrant within this tracker)."""
        if not self.local or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with file_lock(self.results_dir / ".locks" / "mlflow.lock"):
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def _check_sqlite(self) -> None:
        """Fail fast on a store sqlite cannot use (MLflow would retry opening it for minutes)."""
        path = Path(self.uri.split("sqlite:///", 1)[-1].split("?", 1)[0])
        if not path.exists():
            if not os.access(path.parent if path.parent.exists() else self.results_dir, os.W_OK):
                raise TrackingError(f"{path.parent}: cannot create the MLflow store here (not writable)")
            return
        if not path.is_file():
            raise TrackingError(f"{path}: MLflow store is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise TrackingError(f"{path}: MLflow store is not writable")
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head and head != b"SQLite format 3\x00":
            raise TrackingError(f"{path}: MLflow store is not an sqlite database (corrupt?)")

    @property
    def client(self):
        if self._client is None:
            import mlflow

            if self.local:
                self._check_sqlite()
            with self._store_lock():
                client = mlflow.MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)  # creates/migrates a sqlite schema now, locked
            self._client = client
        return self._client

    def prepare(self, experiment: str) -> None:
        """Create the store and the suite's experiment once, before parallel workers race to; a
        server that does not answer marks this tracker down (one timeout) and raises TrackingError."""
        down = probe_server(self.uri)
        if down is not None:
            self.down = down
            raise TrackingError(down)
        self.experiment_id(experiment)

    def experiment_id(self, name: str) -> str:
        with self._store_lock():
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            location = None
            if self.local:
                location = (self.results_dir / "mlartifacts" / name).resolve().as_uri()
            return self.client.create_experiment(name, artifact_location=location)

    def _artifact_dir(self, experiment: str, run_id: str) -> Path:
        """Local stores: artefacts go under the *current* results dir, even if it was moved."""
        return self.results_dir / "mlartifacts" / experiment / run_id / "artifacts"

    def runs_for_key(self, experiment: str, run_key: str) -> list:
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        return self.client.search_runs([found.experiment_id], filter_string=f"tags.run_key = '{run_key}'",
                                       max_results=100)

    def close_leftovers(self, experiment: str, run_key: str) -> str | None:
        """Mark RUNNING runs of ``run_key`` KILLED (call with the run's lock held); return a FINISHED id."""
        finished = None
        for run in self.runs_for_key(experiment, run_key):
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, status="KILLED")
                log.info("closed MLflow run %s of %s (left RUNNING by a killed process) as KILLED",
                         run.info.run_id, run_key)
            elif run.info.status == "FINISHED" and finished is None:
                finished = run.info.run_id
        return finished

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
        """Log a finished run in one go (params, tags, grouped metrics, curves, files); return its id.

        Idempotent per ``tags["run_key"]``: an already finished MLflow run of the key is returned.
        """
        from mlflow.entities import Metric, Param

        exp_id = self.experiment_id(experiment)
        with self._store_lock():
            key = tags.get("run_key")
            if key:
                done = self.close_leftovers(experiment, key)
                if done is not None:
                    return done
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
            with self._store_lock():
                for start in range(0, len(param_list), 100):  # MLflow's per-request limits
                    self.client.log_batch(run_id, params=param_list[start:start + 100])
                for start in range(0, len(values), 1000):
                    self.client.log_batch(run_id, metrics=values[start:start + 1000])
            if self.local:
                dest = self._artifact_dir(experiment, run_id)
                dest.mkdir(parents=True, exist_ok=True)
                for path in artefacts:
                    shutil.copyfile(path, dest / path.name)
                self.client.set_tag(run_id, "artifacts.relative",
                                    str(dest.relative_to(self.results_dir)))
            else:
                for path in artefacts:
                    self.client.log_artifact(run_id, str(path))
        except BaseException:
            with contextlib.suppress(Exception), self._store_lock():
                self.client.set_terminated(run_id, status="FAILED")
            raise
        with self._store_lock():
            self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def try_log_run(self, **kwargs: Any) -> tuple[str | None, str]:
        """``log_run`` with a brief retry; (run id, "") or (None, why) -- never raises for tracking faults."""
        if self.down is not None:
            return None, f"tracking unavailable earlier in this process ({self.down})"
        reason = ""
        for attempt in range(ATTEMPTS):
            down = probe_server(self.uri)  # a hanging server costs one timeout per attempt, no more
            if down is not None:
                reason = f"TrackingError: {down}"
                continue
            try:
                return self.log_run(**kwargs), ""
            except Exception as exc:  # noqa: BLE001 - any store/network fault means "not logged"
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                if attempt + 1 < ATTEMPTS:
                    time.sleep(1.0)
        self.down = reason
        self._client = None
        return None, reason

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def find_run(self, experiment: str, run_key: str) -> str | None:
        """The finished MLflow run already logged for a run key (so a resumed suite logs once)."""
        for run in self.runs_for_key(experiment, run_key):
            if run.info.status == "FINISHED":
                return run.info.run_id
        return None
