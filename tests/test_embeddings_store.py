"""Item embeddings as a stored product: written with every run, verified on load, exported, refused when wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from benchmark import registry
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.grid.plan import plan
from benchmark.plugin import Method
from benchmark.store.embeddings import (
    EMBEDDINGS_FILE,
    ITEM_IDS_FILE,
    load_embeddings,
    sha256_file,
)
from benchmark.tasks.matching.runner import execute_run

SUITE = "xmarket-matching"


def _folder(results, run, method):
    return results / SUITE / next(r.run_key for r in run.records if r.method == method)


def test_every_finished_run_stores_its_embeddings_with_checksums(tiny_suite_run):
    run, results, _ = tiny_suite_run
    items = run.inputs.dataset.items
    for record in run.records:
        folder = results / SUITE / record.run_key
        info = json.loads((folder / "result.json").read_text())["embeddings"]
        assert info["sha256"] == sha256_file(folder / EMBEDDINGS_FILE)
        assert info["ids_sha256"] == sha256_file(folder / ITEM_IDS_FILE)
        vectors = np.load(folder / EMBEDDINGS_FILE)
        assert vectors.dtype == np.float32 and list(vectors.shape) == info["shape"]
        assert vectors.shape[0] == len(items)
    lines = (_folder(results, run, "item2vec") / ITEM_IDS_FILE).read_text().splitlines()
    assert lines[0] == "index\tsource_id\tdomain" and len(lines) == len(items) + 1
    assert lines[5].split("\t") == ["4", str(items.source_id[4]), items.domains[items.domain[4]]]


def test_load_returns_the_stored_vectors_without_refitting(tiny_suite_run):
    run, results, _ = tiny_suite_run
    stored = load_embeddings(results, SUITE, "item2vec", 0, manifest_hash=run.inputs.split.manifest_hash,
                             n_items=run.inputs.train.n_items)
    assert np.array_equal(stored.vectors, np.load(_folder(results, run, "item2vec") / EMBEDDINGS_FILE))
    assert stored.method == "item2vec" and stored.dataset["synthetic"] is True
    assert stored.source_id[:3] == [str(s) for s in run.inputs.dataset.items.source_id[:3]]


def test_export_writes_npy_tsv_and_parquet(tiny_suite_run, tmp_path):
    import pyarrow.parquet as pq

    run, results, _ = tiny_suite_run
    assert main(["embeddings", "export", "--suite", SUITE, "--method", "random", "--results-dir", str(results),
                 "--out", str(tmp_path / "out" / "random_s0")]) == 0
    stored = load_embeddings(results, SUITE, "random", 0)
    assert np.array_equal(np.load(tmp_path / "out" / "random_s0.npy"), stored.vectors)
    assert (tmp_path / "out" / "random_s0.ids.tsv").read_text().splitlines()[0] == "index\tsource_id\tdomain"
    table = pq.read_table(tmp_path / "out" / "random_s0.parquet")
    assert table.column_names == ["index", "source_id", "domain", "embedding"]
    assert np.allclose(np.array(table.column("embedding").to_pylist(), dtype=np.float32), stored.vectors)
    assert table.schema.metadata[b"uie_bench.synthetic"] == b"True"


def test_mlflow_gets_the_path_and_checksum_not_the_array(tiny_suite_run):
    import mlflow

    run, results, _ = tiny_suite_run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(results / 'mlflow.db').resolve()}")
    record = next(r for r in run.records if r.method == "item2vec")
    logged = client.get_run(record.mlflow_run_id)
    assert logged.data.tags["embeddings.sha256"] == record.embeddings["sha256"]
    assert logged.data.tags["embeddings.path"].endswith(f"{record.run_key}/{EMBEDDINGS_FILE}")
    names = {a.path for a in client.list_artifacts(record.mlflow_run_id)}
    assert "ranks.npy" in names and EMBEDDINGS_FILE not in names


def _copy_suite(results, tmp_path):
    shutil.copytree(results / SUITE, tmp_path / SUITE, ignore=shutil.ignore_patterns("mlflow.db"))
    return tmp_path


@pytest.mark.parametrize("damage, message", [
    ("missing_run", "no run of method"),
    ("other_manifest", "split manifest"),
    ("bit_flip", "checksum"),
    ("wrong_rows", "expected"),
])
def test_bad_embeddings_are_one_line_errors_naming_the_folder(tiny_suite_run, tmp_path, damage, message):
    run, results, _ = tiny_suite_run
    root = _copy_suite(results, tmp_path)
    folder = _folder(root, run, "item2vec")
    kwargs = {"manifest_hash": run.inputs.split.manifest_hash, "n_items": run.inputs.train.n_items}
    method = "item2vec"
    if damage == "missing_run":
        method = "pgg"
    elif damage == "other_manifest":
        kwargs["manifest_hash"] = "0" * 64
    elif damage == "bit_flip":
        path = folder / EMBEDDINGS_FILE
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x10
        path.write_bytes(bytes(data))
    else:
        kwargs["n_items"] += 1
    with pytest.raises(BenchmarkError, match=message) as err:
        load_embeddings(root, SUITE, method, 0, **kwargs)
    assert "\n" not in str(err.value) and str(root / SUITE) in str(err.value)
    if damage == "bit_flip":
        assert str(folder) in str(err.value)


def test_export_of_a_missing_run_exits_2(tmp_path, capsys):
    (tmp_path / SUITE).mkdir()
    assert main(["embeddings", "export", "--suite", SUITE, "--method", "item2vec", "--results-dir", str(tmp_path),
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


class _BadUsers(Method):
    """Fine item vectors, garbage user vectors: the runner must refuse the run."""

    name = "bad-users"
    display_name = "BadUsers"
    requires = frozenset({"ids"})
    mode = "nan"

    def fit(self, train, features, cfg, ctx) -> None:
        self.n = train.n_items

    def item_embeddings(self) -> np.ndarray:
        return np.eye(self.n, 4, dtype=np.float32)

    def user_embeddings(self, histories) -> np.ndarray:
        if self.mode == "nan":
            return np.full((len(histories), 4), np.inf, np.float32)
        return np.zeros((len(histories) + 2, 4), np.float32)


@pytest.mark.parametrize("mode, message", [("nan", "non-finite user embeddings"), ("shape", "user embeddings of shape")])
def test_bad_user_embeddings_are_refused_without_a_result_folder(tiny_suite_run, monkeypatch, tmp_path, mode, message):
    run, _, _ = tiny_suite_run
    monkeypatch.setattr(_BadUsers, "mode", mode)
    known = dict(registry.methods())
    known["bad-users"] = _BadUsers
    monkeypatch.setattr(registry, "methods", lambda: known)
    (cfg,) = plan(SUITE, scale="tiny", methods=["bad-users"], allow_extra_methods=True)
    record = execute_run(cfg, run.inputs, tmp_path, tracker=None, progress=False)  # the run boundary catches it
    assert record.status == "failed" and message in record.reason and record.reason.startswith("BenchmarkError")
    assert [p.name for p in (tmp_path / SUITE).iterdir()] == [".failed"]  # no result folder, only the record


def test_methods_with_a_user_encoder_get_next_item_metrics_and_ranks(tiny_suite_run):
    run, results, _ = tiny_suite_run
    by = {r.method: r for r in run.records}
    assert by["popularity"].next_item_metrics["all"]["n"] == len(run.inputs.split.cases)
    assert set(by["popularity"].next_item_metrics["all"]) >= {"HR@10", "HR@20", "HR@50", "MRR@20", "NDCG@50"}
    assert not by["item2vec"].next_item_metrics  # no user encoder: absent from the next-item table
    ranks = np.load(results / SUITE / by["popularity"].run_key / "next_item_ranks.npy")
    assert len(ranks) == len(run.inputs.split.cases) and ranks.min() >= 1
    assert not (results / SUITE / by["item2vec"].run_key / "next_item_ranks.npy").exists()
