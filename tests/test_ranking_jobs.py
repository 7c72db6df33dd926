"""The ranking grid with --jobs: Ray tasks give the cells of --jobs 1; every_other per scale preset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.errors import ConfigError
from benchmark.registry import suite_path
from benchmark.tasks.ranking.parallel import heavy_first
from benchmark.tasks.ranking.suite import (
    grid_every_other,
    load_ranking_suite,
    resolve_cells,
    run_ranking_suite,
)


def _suite_file(tmp_path: Path, old: str, new: str) -> Path:
    text = suite_path("xmarket-ranking").read_text()
    assert old in text
    path = tmp_path / "ranking.yaml"
    path.write_text(text.replace(old, new))
    return path


def _matching_copy(results: Path, dest: Path) -> Path:
    shutil.copytree(results / "xmarket-matching", dest / "xmarket-matching")
    return dest


def test_heavy_cells_are_submitted_first_din_then_dcnv2_then_finalmlp_wide_embeddings_first():
    def cell(model, emb):
        return SimpleNamespace(model=model, embedding=emb)

    def emb(d):
        return SimpleNamespace(vectors=np.zeros((3, d), np.float32))

    pairs = [(cell("dcnv2", "none"), None), (cell("finalmlp", "a"), emb(8)), (cell("din", "none"), None),
             (cell("dcnv2", "b"), emb(64)), (cell("din", "a"), emb(8)), (cell("dcnv2", "a"), emb(8))]
    order = [(c.model, c.embedding) for c, _ in heavy_first(pairs)]
    assert order == [("din", "a"), ("din", "none"), ("dcnv2", "b"), ("dcnv2", "a"), ("dcnv2", "none"),
                     ("finalmlp", "a")]


def test_every_other_per_preset_wins_over_the_top_level_and_is_recorded():
    suite = load_ranking_suite("xmarket-ranking")
    assert suite["every_other"] is True and suite["scales"]["small"]["every_other"] is False
    assert grid_every_other(suite, "small") is False and grid_every_other(suite, "tiny") is True
    assert grid_every_other({**suite, "every_other": False, "scales": {"tiny": {"every_other": True}}}, "tiny")
    assert not grid_every_other({**suite, "every_other": False}, "paper")
    _, _, cells = resolve_cells(suite, "small")
    assert len(cells) == 5 * 3 * 3 and cells[0].scaled_by_preset["every_other"] is False  # the paper's 45 cells


@pytest.mark.parametrize(("old", "new", "where"), [
    ("    every_other: false\n", "    every_other: 'no'\n", "scales.small.every_other"),
    ("every_other: true ", "every_other: 1 ", "every_other"),
])
def test_a_non_bool_every_other_is_a_config_error_naming_the_key(tmp_path: Path, old: str, new: str, where: str):
    path = _suite_file(tmp_path, old, new)
    with pytest.raises(ConfigError, match=rf": {where}: expected true or false"):
        load_ranking_suite(str(path))


def test_an_unknown_executor_is_refused_before_any_work(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        run_ranking_suite("xmarket-ranking", executor="dask", data_dir=tmp_path / "nothing",
                          results_dir=tmp_path / "r", echo=lambda s: None)


def _comparable(folder: Path) -> dict:
    record = json.loads((folder / "result.json").read_text())
    for volatile in ("mlflow_run_id", "timings", "tracking"):
        record.pop(volatile)
    record["info"].pop("fit_s")
    for volatile in ("fit_wall_s", "fit_cpu_s"):  # the budget's times; its steps, epochs and curve must match
        record["info"]["training"].pop(volatile)
        record["training"].pop(volatile, None)  # the record's envelope carries the same budget
    record["embedding_source"].pop("folder", None)  # each results dir has its own copy of the matching run
    return record


@pytest.mark.slow
def test_jobs_1_and_2_give_the_same_keys_metrics_and_scores(tiny_suite_run, tiny_data_dir: Path, tmp_path: Path,
                                                            capsys):
    import mlflow
    import ray

    _, results, _ = tiny_suite_run  # stored clip and item2vec embeddings at tiny scale
    r1, r2 = _matching_copy(results, tmp_path / "r1"), _matching_copy(results, tmp_path / "r2")
    lines: list[str] = []
    seq = run_ranking_suite("xmarket-ranking", scale="tiny", models=["din"], methods=["item2vec"], seeds=[0],
                            data_dir=tiny_data_dir, results_dir=r1, progress=False, jobs=1, echo=lines.append)
    assert not any("Ray tasks" in s for s in lines)
    assert any("not in this grid" in s and "clip" in s and "--methods item2vec,clip" in s for s in lines)
    capsys.readouterr()
    try:  # through the CLI: --jobs reaches the ranking suite
        code = main(["run", "--suite", "xmarket-ranking", "--scale", "tiny", "--models", "din", "--methods",
                     "item2vec", "--seeds", "0", "--jobs", "2", "--dataset", "xmarket-sim", "--data-dir", str(tiny_data_dir),
                     "--results-dir", str(r2), "--reports-dir", str(tmp_path / "reports"), "--no-progress"])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 0 and "2 to compute, 2 at once" in out and "2 cell(s) as Ray tasks" in out
    keys = [r.run_key for r in seq.records]
    assert len(keys) == 2 and {r.embedding for r in seq.records} == {"none", "item2vec"}
    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(r2 / 'mlflow.db').resolve()}")
    for key, record in zip(keys, seq.records, strict=True):
        a, b = r1 / "xmarket-ranking" / key, r2 / "xmarket-ranking" / key
        assert _comparable(a) == _comparable(b)  # metrics (AUC, logloss exactly), info, config, CTR, source
        assert (a / "test_scores.npy").read_bytes() == (b / "test_scores.npy").read_bytes()
        assert (a / "curves.csv").read_text() == (b / "curves.csv").read_text()
        logged = json.loads((b / "result.json").read_text())["mlflow_run_id"]  # results first, then MLflow
        assert logged and store.get_run(logged).data.tags["run_key"] == key
        assert json.loads((b / "result.json").read_text())["metrics"]["auc"] == record.metrics["auc"]
    again: list[str] = []
    par = run_ranking_suite("xmarket-ranking", scale="tiny", models=["din"], methods=["item2vec"], seeds=[0],
                            data_dir=tiny_data_dir, results_dir=r2, progress=False, jobs=2, echo=again.append)
    assert [r.run_key for r in par.records] == keys  # grid order; resumed without Ray
    assert sum("finished earlier" in s for s in again) == 2 and not any("Ray tasks" in s for s in again)


@pytest.mark.slow
def test_the_preset_every_other_decides_whether_other_stored_methods_join(tiny_suite_run, tiny_data_dir: Path,
                                                                           tmp_path: Path):
    _, results, _ = tiny_suite_run
    r = _matching_copy(results, tmp_path / "r")
    base = "embeddings: [vqrec, uae, pgg, uniembedding]"
    for flag, expected in (("false", {"none", "item2vec"}), ("true", {"none", "item2vec", "clip"})):
        path = _suite_file(tmp_path, base, "embeddings: [item2vec]")
        path.write_text(path.read_text().replace("  tiny:\n", f"  tiny:\n    every_other: {flag}\n", 1))
        lines: list[str] = []
        run = run_ranking_suite(str(path), scale="tiny", models=["dcnv2"], data_dir=tiny_data_dir, results_dir=r,
                                progress=False, echo=lines.append)
        assert {c.embedding for c in run.records} == expected
        assert any("not in this grid" in s for s in lines) == (flag == "false")
