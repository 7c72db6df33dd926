"""The transfer grid's execution: tasks for --jobs, identical ranks whatever the jobs, MLflow per condition."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from benchmark.registry import suite_path
from benchmark.tasks.transfer.grid import run_transfer, split_tasks
from benchmark.tasks.transfer.stages import Condition


def _small_suite(tmp_path: Path) -> Path:
    """The shipped transfer suite with one source and one target share (4 TransRec/TFS conditions a seed)."""
    text = suite_path("xmarket-transfer").read_text()
    text = text.replace("source_fractions: [0.2, 0.5, 1.0]", "source_fractions: [1.0]")
    text = text.replace("target_fractions: [0.2, 0.6, 1.0]", "target_fractions: [1.0]")
    assert text.count("fractions: [1.0]") == 2
    path = tmp_path / "transfer-small-grid.yaml"
    path.write_text(text)
    return path


def test_one_source_pretraining_is_one_task_the_rest_their_own_heavy_first():
    grid = [Condition("transrec", 0, 1.0, 0.2), Condition("tfs", 0, None, 0.2), Condition("transrec", 0, 1.0, 1.0),
            Condition("transrec", 0, 0.2, 1.0), Condition("sasrec", 0, None, 1.0),
            Condition("transrec", 1, 1.0, 1.0, False), Condition("tfs", 1, None, 1.0, False),
            Condition("tfs", 1, None, 1.0), Condition("gru4rec", 1, None, 1.0)]
    tasks = split_tasks(grid)
    # conditions on the seed-0 source pretraining at 100 % share it; src 20 % is its own pretraining
    assert tasks[:2] == [[grid[0], grid[2]], [grid[3]]]
    assert tasks[2:4] == [[grid[1]], [grid[7]]]  # end-to-end TFS, one task each
    assert tasks[4:6] == [[grid[5]], [grid[6]]]  # frozen last among the heavy ones
    assert tasks[6:] == [[grid[4]], [grid[8]]]
    assert sorted(c.label for t in tasks for c in t) == sorted(c.label for c in grid)
    assert split_tasks([]) == []


@pytest.mark.slow
def test_jobs_1_and_2_give_the_same_keys_and_byte_identical_ranks(tiny_data_dir: Path, tmp_path: Path):
    import mlflow
    import ray

    suite = str(_small_suite(tmp_path))
    kw = {"scale": "tiny", "methods": ["transrec", "sasrec", "gru4rec"], "seeds": [0], "data_dir": tiny_data_dir,
          "progress": False, "echo": lambda s: None}
    seq = run_transfer(suite, results_dir=tmp_path / "r1", jobs=1, **kw)
    lines: list[str] = []
    try:
        par = run_transfer(suite, results_dir=tmp_path / "r2", jobs=2, **{**kw, "echo": lines.append})
    finally:
        ray.shutdown()
    assert any("in 6 task(s)" in s for s in lines)  # TransRec e2e, frozen; TFS e2e, frozen; 2 baselines
    keys = sorted(p.name for p in seq.iterdir() if not p.name.startswith("."))
    assert len(keys) == 4 + 2 and keys == sorted(p.name for p in par.iterdir() if not p.name.startswith("."))
    for key in keys:
        for name in ("next_item_ranks.npy", "ranks.npy"):
            assert (seq / key / name).read_bytes() == (par / key / name).read_bytes(), (key, name)
    for out in (seq, par):  # every condition is logged, results first
        store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(out.parent.parent / 'mlflow.db').resolve()}")
        for key in keys:
            record = json.loads((out / key / "result.json").read_text())
            assert record["tracking"]["status"] == "logged" and record["mlflow_run_id"]
            run = store.get_run(record["mlflow_run_id"])
            assert run.data.tags["run_key"] == key and run.data.tags["synthetic"] == "true"
            assert run.data.tags["method"] == record["condition"]["method"]
            hr10 = record["next_item"]["all"]["HR@10"]
            assert run.data.metrics["next_item/all/HR_10"] == pytest.approx(hr10)
            assert "item_to_item/all/NDCG_10" in run.data.metrics
    again: list[str] = []
    run_transfer(suite, results_dir=tmp_path / "r2", jobs=2, **{**kw, "echo": again.append})  # resumed: no Ray
    assert sum("finished earlier" in s for s in again) == len(keys) and not any("task(s)" in s for s in again)


def test_a_condition_survives_an_unreachable_tracking_server(tiny_data_dir: Path, tmp_path: Path, monkeypatch):
    """Results first, tracking second: the condition is stored with MLflow down, and says it was not logged."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_transfer(str(_small_suite(tmp_path)), scale="tiny", methods=["sasrec"], seeds=[0],
                       data_dir=tiny_data_dir, results_dir=tmp_path / "r", progress=False, echo=lambda s: None,
                       tracking_uri=f"http://127.0.0.1:{port}")
    (folder,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    record = json.loads((folder / "result.json").read_text())
    assert record["mlflow_run_id"] is None
    assert record["tracking"]["status"] == "not logged" and record["tracking"]["reason"]
    ranks = np.load(folder / "next_item_ranks.npy")
    assert len(ranks) == record["target_cases"] > 0 and record["next_item"]["all"]["n"] == len(ranks)
