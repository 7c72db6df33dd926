"""The ranking task end to end on the tiny twin: CTR data rules, the suite, missing and bad embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.errors import BenchmarkError, DataError
from benchmark.tasks.ranking.data import build_ctr, cached_ctr, sample_negatives


@pytest.fixture(scope="module")
def tiny_inputs(tiny_data_dir: Path):
    from benchmark.grid.plan import plan
    from benchmark.inputs import prepare_inputs

    first = plan("xmarket-matching", scale="tiny")[0]
    none = {"text_encoder": None, "image_encoder": None, "batch_size": 64, "word_drop": 0.0}
    return prepare_inputs(first.dataset, first.split, none, tiny_data_dir, "tiny", False)


def test_ctr_rows_follow_the_paper_rules(tiny_inputs) -> None:
    split, train = tiny_inputs.split, tiny_inputs.train
    data = build_ctr(split, train, negatives=5, max_history=4, validation_fraction=0.1, seed=0)
    dom = np.r_[-1, train.item_domain]
    for part in (data.train, data.valid, data.test):
        assert len(part) == 6 * part.n_positives and part.label.reshape(-1, 6)[:, 0].all()
        groups = part.target.reshape(-1, 6)
        assert (dom[groups] == dom[groups[:, :1]]).all()  # negatives share the positive's domain
        assert all(len(set(g)) == 6 for g in groups)  # distinct
    # test rows are exactly the split's test cases, their negatives avoid the case's whole history
    assert np.array_equal(data.test.target.reshape(-1, 6)[:, 0] - 1, split.cases.target)
    for c in range(len(split.cases)):
        seen = set(split.histories.history(c).tolist()) | {int(split.cases.target[c])}
        assert not seen & set((data.test.target.reshape(-1, 6)[c, 1:] - 1).tolist())
    # training positives come from training sequences only: one per position t >= 1 (minus the carve-out)
    n_train_positions = int((train.sequences.lengths - 1).clip(min=0).sum())
    assert data.train.n_positives == n_train_positions - data.valid.n_positives
    unseen = set(split.cases.user[~split.cases.overlapped].tolist())
    assert not unseen & set(train.sequences.users.tolist())
    again = build_ctr(split, train, negatives=5, max_history=4, validation_fraction=0.1, seed=0)
    assert again.hash == data.hash
    assert build_ctr(split, train, negatives=5, max_history=4, validation_fraction=0.1, seed=1).hash != data.hash


def test_ctr_cache_round_trip(tiny_inputs, tmp_path: Path) -> None:
    a = cached_ctr(tiny_inputs.split, tiny_inputs.train, tmp_path, negatives=5, max_history=3,
                   validation_fraction=0.1, seed=0)
    b = cached_ctr(tiny_inputs.split, tiny_inputs.train, tmp_path, negatives=5, max_history=3,
                   validation_fraction=0.1, seed=0)
    assert a.hash == b.hash and np.array_equal(a.train.target, b.train.target) and len(list(tmp_path.iterdir())) == 1


def test_a_domain_too_small_for_the_negatives_is_named() -> None:
    item_domain = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], dtype=np.int16)
    with pytest.raises(DataError, match="domain 'Tiny' has 3 item"):
        sample_negatives(np.array([0]), np.array([0]), np.zeros(0, np.int64), item_domain, ("Tiny", "Big"), 5,
                         np.random.default_rng(0))


@pytest.fixture(scope="module")
def ranking_run(tiny_suite_run, tiny_data_dir: Path):
    from benchmark.tasks.ranking.suite import run_ranking_suite

    _, results, reports = tiny_suite_run
    run = run_ranking_suite("xmarket-ranking", scale="tiny", methods=["item2vec"], data_dir=tiny_data_dir,
                            results_dir=results, progress=False, echo=lambda s: None)
    return run, results, reports


def test_tiny_suite_runs_every_cell_logs_curves_and_reports(ranking_run) -> None:
    import mlflow

    from benchmark.reporting.ranking import write_ranking_reports

    run, results, reports = ranking_run
    assert {(r.model, r.embedding) for r in run.records} == {
        (m, e) for m in ("dcnv2", "finalmlp", "din") for e in ("none", "item2vec")}
    for r in run.records:
        assert 0.5 < r.metrics["auc"] <= 1.0 and r.metrics["logloss"] > 0
        assert r.ctr["ctr_hash"] == run.records[0].ctr["ctr_hash"]
    client = mlflow.MlflowClient(f"sqlite:///{(results / 'mlflow.db').resolve()}")
    mlrun = client.get_run(run.records[0].mlflow_run_id)
    assert mlrun.data.tags["ctr_hash"] == run.records[0].ctr["ctr_hash"]
    assert len(client.get_metric_history(mlrun.info.run_id, "valid/auc")) >= 1
    text = write_ranking_reports("xmarket-ranking", results, reports)
    assert "Item2Vec" in text and "w/o Emb." in text and "SYNTHETIC" in text
    assert "Data: the SYNTHETIC XMarket twin" in text and "(informational)" not in text
    n_test = run.records[0].ctr["test_rows"]
    assert "### Noise: test rows and 95 % CI half-widths of AUC" in text
    assert sum(f"| {n_test} |" in line and "noise |" in line for line in text.splitlines()) == 3  # a row per model
    rows = (reports / "xmarket-ranking" / "xmarket-sim-tiny" / "table4.csv").read_text().splitlines()
    assert rows[0].startswith("pretrained_embeddings,DCNv2_AUC") and len(rows) == 3
    assert "C9" in (reports / "xmarket-ranking" / "xmarket-sim-tiny" / "claims.md").read_text()  # UniEmb not run -> not run
    assert "not run" in (reports / "xmarket-ranking" / "xmarket-sim-tiny" / "claims.md").read_text()


def test_missing_embeddings_name_the_matching_runs_to_do(ranking_run, tiny_data_dir: Path, capsys) -> None:
    _, results, _ = ranking_run
    code = main(["run", "--suite", "xmarket-ranking", "--scale", "tiny", "--methods", "pgg", "--dataset", "xmarket-sim", "--data-dir",
                 str(tiny_data_dir), "--results-dir", str(results), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "pgg (seed 0)" in err[0] and "--suite xmarket-matching" in err[0] and "--methods pgg" in err[0]


def _item2vec_folder(results: Path) -> Path:
    for path in (results / "xmarket-matching").glob("*/result.json"):
        if json.loads(path.read_text())["method"] == "item2vec":
            return path.parent
    raise AssertionError("no item2vec run")


@pytest.mark.parametrize("tamper", ["manifest", "rows"])
def test_embeddings_of_another_split_or_size_exit_2_naming_the_folder(ranking_run, tiny_data_dir: Path,
                                                                      tmp_path: Path, capsys, tamper: str) -> None:
    from benchmark.store.embeddings import sha256_file

    _, results, _ = ranking_run
    bad = tmp_path / "results"
    shutil.copytree(results / "xmarket-matching", bad / "xmarket-matching")
    folder = _item2vec_folder(bad)
    record = json.loads((folder / "result.json").read_text())
    if tamper == "manifest":
        record["manifest_hash"] = "0" * 64
    else:
        vectors = np.load(folder / "item_embeddings.npy")[:-1]
        np.save(folder / "item_embeddings.npy", vectors)
        record["embeddings"]["sha256"] = sha256_file(folder / "item_embeddings.npy")
        record["embeddings"]["shape"] = list(vectors.shape)
    (folder / "result.json").write_text(json.dumps(record))
    code = main(["run", "--suite", "xmarket-ranking", "--scale", "tiny", "--methods", "item2vec", "--dataset", "xmarket-sim", "--data-dir",
                 str(tiny_data_dir), "--results-dir", str(bad), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(folder) in err[0]


def test_ranking_only_flags_are_refused_for_matching_suites(capsys) -> None:
    assert main(["run", "--suite", "xmarket-matching", "--models", "din"]) == 2
    with pytest.raises(BenchmarkError):
        from benchmark.tasks.ranking.suite import load_ranking_suite, resolve_cells

        resolve_cells(load_ranking_suite("xmarket-ranking"), "tiny", models=["deepfm"])


def test_a_tracking_store_that_fails_costs_the_mlflow_run_not_the_cell(ranking_run, tiny_data_dir: Path,
                                                                        tmp_path: Path, monkeypatch) -> None:
    """Results first, tracking second: the cell is written (and reported) with MLflow unusable."""
    from benchmark.tasks.ranking.suite import run_ranking_suite

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    _, results, _ = ranking_run
    run = run_ranking_suite("xmarket-ranking", scale="tiny", models=["dcnv2"], methods=["item2vec"], seeds=[7],
                            data_dir=tiny_data_dir, results_dir=results, progress=False, echo=lambda s: None,
                            tracking_uri=f"file://{tmp_path / 'mlruns'}")  # MLflow refuses file stores now
    assert len(run.records) == 2 and all(r.mlflow_run_id is None for r in run.records)
    for r in run.records:
        assert (results / "xmarket-ranking" / r.run_key / "result.json").exists()
