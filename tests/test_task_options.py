"""Every run option reaches every task: the ranking and transfer suites see the data options of Table 1.

Before, a ranking or transfer suite ignored ``--dataset``/``--domains``, fell back to the twin
although a data directory was named, and used ``matching_suite:`` as a results folder name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.options import RunOptions
from benchmark.registry import suite_path, suite_task
from benchmark.reporting.claims import Claim, claim_table
from benchmark.tasks.ranking.suite import load_ranking_suite, matching_suite_path


def test_every_shipped_suite_declares_its_task():
    assert suite_task("xmarket-matching") == "matching"
    assert suite_task("xmarket-ranking") == "ranking"
    assert suite_task("xmarket-transfer") == "transfer"
    assert suite_task("unim2rec-c12") == "matching"


def test_data_overrides_go_to_the_matching_suite_and_the_rest_to_the_cells():
    opts = RunOptions(suite="xmarket-ranking", overrides=("dataset.name=xmarket-sim", "training.epochs=2",
                                                          "split.seed=3", "features.text_encoder=minilm"))
    assert opts.split_overrides() == (("dataset.name=xmarket-sim", "split.seed=3", "features.text_encoder=minilm"),
                                      ("training.epochs=2",))


def test_matching_suite_may_be_a_name_or_a_file(tmp_path: Path):
    suite = load_ranking_suite("xmarket-ranking")
    assert matching_suite_path(suite, suite_path("xmarket-ranking")) == suite_path("xmarket-matching")
    copy = tmp_path / "my-matching.yaml"
    shutil.copy(suite_path("xmarket-matching"), copy)
    ranking = tmp_path / "my-ranking.yaml"
    ranking.write_text(suite_path("xmarket-ranking").read_text().replace(
        "matching_suite: xmarket-matching", "matching_suite: my-matching.yaml"))
    mine = load_ranking_suite(str(ranking))
    assert matching_suite_path(mine, ranking) == copy  # beside the ranking suite file
    mine["matching_suite"] = str(copy)
    assert matching_suite_path(mine, ranking) == copy  # or a path as given


def test_claims_off_xmarket_are_informational():
    claims = [Claim("C9", "pretrained embeddings raise AUC", "holds", "e")]
    assert "**holds**" in "\n".join(claim_table(claims, True))
    text = "\n".join(claim_table(claims, False))
    assert "**holds (informational)**" in text and text.startswith("Informational:")


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["xmarket-ranking", "xmarket-transfer"])
def test_a_named_data_dir_never_falls_back_to_the_twin(suite: str, tmp_path: Path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    code = main(["run", "--suite", suite, "--scale", "tiny", "--data-dir", str(data), "--results-dir",
                 str(tmp_path / "r"), "--reports-dir", str(tmp_path / "p"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "XMarket files not found" in err and len(err.splitlines()) == 1
    assert list(data.iterdir()) == [] or not any("xmarket-sim" in str(p) for p in data.rglob("*"))


@pytest.mark.slow
def test_ranking_runs_on_the_dataset_the_user_names(tiny_suite_run, tiny_data_dir: Path, tmp_path: Path, capsys):
    _, results, _ = tiny_suite_run  # item2vec embeddings on the tiny twin
    r = tmp_path / "r"
    shutil.copytree(results / "xmarket-matching", r / "xmarket-matching")
    code = main(["run", "--suite", "xmarket-ranking", "--scale", "tiny", "--dataset", "xmarket-sim", "--models", "din",
                 "--methods", "item2vec", "--seeds", "0", "--jobs", "1", "--data-dir", str(tiny_data_dir),
                 "--results-dir", str(r), "--reports-dir", str(tmp_path / "p"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "SYNTHETIC twin" not in out
    cells = [json.loads(p.read_text()) for p in (r / "xmarket-ranking").glob("*/result.json")]
    assert sorted(c["embedding"] for c in cells) == ["item2vec", "none"]
    assert {c["dataset"]["name"] for c in cells} == {"xmarket-sim"}


@pytest.mark.slow
def test_transfer_runs_on_the_dataset_the_user_names(tiny_data_dir: Path, tmp_path: Path, capsys):
    code = main(["run", "--suite", "xmarket-transfer", "--scale", "tiny", "--dataset", "xmarket-sim", "--methods",
                 "sasrec", "--seeds", "0", "--jobs", "1", "--data-dir", str(tiny_data_dir), "--results-dir",
                 str(tmp_path / "r"), "--reports-dir", str(tmp_path / "p"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "r" / "xmarket-transfer" / "transfer").glob("*/result.json")]
    assert record["dataset"]["name"] == "xmarket-sim" and record["condition"]["method"] == "sasrec"


@pytest.mark.slow
def test_sync_logs_ranking_cells_and_transfer_conditions_mlflow_lacks(tiny_suite_run, tiny_data_dir: Path,
                                                                       tmp_path: Path, monkeypatch, capsys):
    """One engine: every task's folders are complete before MLflow, and `sync` logs them later."""
    import socket

    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    _, results, _ = tiny_suite_run
    r = tmp_path / "r"
    shutil.copytree(results / "xmarket-matching", r / "xmarket-matching")
    common = ["--scale", "tiny", "--seeds", "0", "--jobs", "1", "--dataset", "xmarket-sim", "--data-dir",
              str(tiny_data_dir), "--results-dir", str(r), "--reports-dir", str(tmp_path / "p"), "--no-progress",
              "--tracking-uri", dead]
    assert main(["run", "--suite", "xmarket-ranking", "--models", "din", "--methods", "item2vec", *common]) == 0
    assert main(["run", "--suite", "xmarket-transfer", "--methods", "sasrec", *common]) == 0
    cells = list((r / "xmarket-ranking").glob("*/result.json"))
    conditions = list((r / "xmarket-transfer" / "transfer").glob("*/result.json"))
    assert len(cells) == 2 and len(conditions) == 1
    for path in cells + conditions:  # kept, not logged, and say so
        assert json.loads(path.read_text())["tracking"]["status"] == "not logged"
        assert (path.parent / "tracking.json").is_file() and (path.parent / "SHA256SUMS").is_file()
    capsys.readouterr()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for suite in ("xmarket-ranking", "xmarket-transfer"):
        assert main(["sync", "--suite", suite, "--results-dir", str(r), "--tracking-uri", store]) == 0
    out = capsys.readouterr().out
    assert "2 logged" in out and "1 logged" in out
    client = mlflow.MlflowClient(tracking_uri=store)
    for path in cells + conditions:
        record = json.loads(path.read_text())
        assert record["tracking"]["status"] == "logged"
        run = client.get_run(record["mlflow_run_id"])
        assert run.data.tags["run_key"] == path.parent.name and run.data.tags["task"] in ("ranking", "transfer")
        assert run.data.metrics  # the metrics came from tracking.json
