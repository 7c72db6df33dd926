"""One record format and one engine for every task (benchmark/store/records.py, benchmark/grid/engine.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.grid.engine import KeyedRun, run_keyed
from benchmark.store.records import (
    RankingRecord,
    RunRecord,
    TransferRecord,
    finished_records,
    read_record,
)
from benchmark.store.sync import sync_results
from benchmark.store.tracking import Tracker


def _matching(key: str = "k1", **extra) -> RunRecord:
    return RunRecord(run_key=key, suite="s", method="popularity", display="Popularity", seed=0, scale="tiny",
                     metrics={"all": {"HR@50": 1.0}}, **extra)


def _write(folder: Path, data: dict, name: str = "result.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))
    return folder


def test_every_task_writes_the_same_envelope_with_its_task(tmp_path: Path) -> None:
    records = [_matching(),
               RankingRecord(run_key="k2", suite="r", seed=0, scale="tiny", model="dcnv2", embedding="none",
                             embedding_display="w/o Emb."),
               TransferRecord(run_key="k3", suite="t", seed=1, scale="tiny", condition={"method": "sasrec"},
                              display="SASRec")]
    for record in records:
        folder = tmp_path / record.run_key
        folder.mkdir()
        record.write(folder)
        stored = json.loads((folder / "result.json").read_text())
        assert stored["task"] == {"k1": "matching", "k2": "ranking", "k3": "transfer"}[record.run_key]
        assert stored["schema"] == 3
        assert {"run_key", "suite", "seed", "scale", "status", "training", "tracking", "machine"} <= set(stored)
        assert type(read_record(folder)) is type(record) and read_record(folder) == record


def test_records_of_earlier_versions_read_as_their_task(tmp_path: Path) -> None:
    """Matching schema 2 and ranking schema 1 had no task field; transfer kept record.json with ``key``."""
    matching = {k: v for k, v in _matching().as_dict().items() if k != "task"} | {"schema": 2}
    ranking = {"run_key": "r", "suite": "r", "model": "din", "embedding": "none", "embedding_display": "w/o Emb.",
               "paper_row": "none", "seed": 0, "embedding_seed": 0, "scale": "tiny", "dataset": {},
               "manifest_hash": "m", "ctr": {}, "embedding_source": {}, "metrics": {"auc": 0.7}, "info": {},
               "config": {}, "schema": 1}
    transfer = {"condition": {"method": "tfs", "seed": 2}, "display": "TFS", "key": "t", "suite": "x",
                "scale": "tiny", "dataset": {"label": "twin", "manifest_hash": "m"}, "seconds": 1.5,
                "stats": {"training": {"stop_reason": "converged"}}}
    m = read_record(_write(tmp_path / "m", matching))
    r = read_record(_write(tmp_path / "r", ranking))
    t = read_record(_write(tmp_path / "t", transfer, "record.json"))
    assert isinstance(m, RunRecord) and m.task == "matching" and m.metrics == {"all": {"HR@50": 1.0}}
    assert isinstance(r, RankingRecord) and r.metrics["auc"] == 0.7
    assert isinstance(t, TransferRecord) and (t.run_key, t.seed, t.manifest_hash) == ("t", 2, "m")
    assert t.training == {"stop_reason": "converged"}


@pytest.mark.parametrize("text", ["", '{"run_key": "k1", "suite"', "[1, 2]", '{"task": "dance", "schema": 3}'])
def test_an_unreadable_record_is_one_line_naming_the_file(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "result.json").write_text(text)
    with pytest.raises(BenchmarkError) as err:
        read_record(folder)
    assert str(folder / "result.json") in str(err.value) and "\n" not in str(err.value)


def _produce(calls: list[str], key: str = "k1"):
    def produce(tmp: Path) -> None:
        calls.append(key)
        (tmp / "ranks.npy").write_bytes(b"ranks")
        _matching(key).write(tmp)
    return produce


def test_the_engine_computes_a_key_once_then_reads_it_back(tmp_path: Path) -> None:
    calls: list[str] = []
    run = KeyedRun(tmp_path, "s", "k1", tmp_path / "s" / "k1")
    first, cached = run_keyed(run, _produce(calls), tracker=None)
    assert not cached and calls == ["k1"] and (run.folder / "SHA256SUMS").is_file()
    again, cached = run_keyed(run, _produce(calls), tracker=None)
    assert cached and calls == ["k1"] and again.timings.get("cached") is True
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_failing_run_leaves_no_folder(tmp_path: Path) -> None:
    def explode(tmp: Path) -> None:
        (tmp / "ranks.npy").write_bytes(b"half")
        raise RuntimeError("boom")

    run = KeyedRun(tmp_path, "s", "k1", tmp_path / "s" / "k1")
    with pytest.raises(RuntimeError, match="boom"):
        run_keyed(run, explode, tracker=None)
    assert not any((tmp_path / "s").iterdir())


def test_a_truncated_record_is_named_and_computed_again(tmp_path: Path, caplog) -> None:
    calls: list[str] = []
    run = KeyedRun(tmp_path, "s", "k1", tmp_path / "s" / "k1")
    run_keyed(run, _produce(calls), tracker=None)
    path = run.folder / "result.json"
    path.write_text(path.read_text()[:40])  # a kill or a full disk mid-write
    with caplog.at_level(logging.WARNING):
        record, cached = run_keyed(run, _produce(calls), tracker=None)
    assert not cached and calls == ["k1", "k1"] and record.run_key == "k1"
    assert f"{path}: unreadable record" in caplog.text and "computed again" in caplog.text


def test_reports_and_sync_skip_an_unreadable_record_by_name(tmp_path: Path, caplog) -> None:
    calls: list[str] = []
    for key in ("k1", "k2"):
        run_keyed(KeyedRun(tmp_path, "s", key, tmp_path / "s" / key), _produce(calls, key), tracker=None)
        (tmp_path / "s" / key / "tracking.json").write_text(json.dumps(
            {"experiment": "s", "run_name": key, "params": {}, "tags": {"run_key": key}, "metrics": {}}))
    (tmp_path / "s" / "k2" / "result.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        records = finished_records(tmp_path / "s", RunRecord)
    assert [r.run_key for r in records] == ["k1"]
    assert str(tmp_path / "s" / "k2" / "result.json") in caplog.text
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    counts = sync_results(tmp_path, tracker, "s")
    assert counts["unreadable"] == 1 and counts["logged"] == 1
    assert read_record(tmp_path / "s" / "k1").tracking["status"] == "logged"


def test_a_flipped_byte_in_a_result_file_is_named_and_computed_again(tmp_path: Path, caplog) -> None:
    calls: list[str] = []
    run = KeyedRun(tmp_path, "s", "k1", tmp_path / "s" / "k1")
    run_keyed(run, _produce(calls), tracker=None)
    (run.folder / "ranks.npy").write_bytes(b"rankz")  # same size, other bytes
    with caplog.at_level(logging.WARNING):
        _, cached = run_keyed(run, _produce(calls), tracker=None)
        assert finished_records(tmp_path / "s", RunRecord)  # recomputed: whole again
    assert not cached and calls == ["k1", "k1"]
    assert f"{run.folder / 'ranks.npy'}: does not match its checksum" in caplog.text
    (run.folder / "ranks.npy").write_bytes(b"rankz")
    with caplog.at_level(logging.WARNING):
        assert finished_records(tmp_path / "s", RunRecord) == []  # a report leaves it out, by name
