"""Shared fixtures: one tiny synthetic twin and one tiny suite run per test session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
# A user cache of the session's own: features.text_backend=auto reads this machine's measured choice
# from the user cache (benchmark/backend_choice.py), and the tests must not follow a developer's record.
os.environ["UIE_CACHE_DIR"] = tempfile.mkdtemp(prefix="uie-bench-test-cache-")
atexit.register(shutil.rmtree, os.environ["UIE_CACHE_DIR"], True)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the tiny synthetic twin (generated once per session)."""
    from benchmark.data.sources import load_dataset

    root = tmp_path_factory.mktemp("data")
    load_dataset("xmarket-sim", root, scale="tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_suite_run(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The xmarket-matching suite on the tiny preset, run once: (SuiteRun, results_dir, reports_dir)."""
    from benchmark.tasks.matching.runner import run_suite

    out = tmp_path_factory.mktemp("out")
    results, reports = out / "results", out / "reports"
    run = run_suite("xmarket-matching", scale="tiny", methods=["clip", "item2vec", "popularity", "random"],
                    data_dir=tiny_data_dir, results_dir=results, progress=False, echo=lambda s: None)
    return run, results, reports


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the runner gives a method (ctx.workers = 1): tiny tensors run fast and
    reproducibly without OpenMP contention; the caller's setting comes back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
