"""The runner end to end on the tiny twin: results, resumability, MLflow, bad method output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.grid.plan import plan
from benchmark.plugin import Method
from benchmark.tasks.matching.runner import execute_run, run_suite


def test_every_run_leaves_a_complete_result_folder(tiny_suite_run) -> None:
    run, results, _ = tiny_suite_run
    assert {r.method for r in run.records} == {"clip", "item2vec", "popularity", "random"}
    for record in run.records:
        folder = results / "xmarket-matching" / record.run_key
        assert record.status == "done"
        assert {"result.json", "ranks.npy", "config.yaml"} <= {p.name for p in folder.iterdir()}
        ranks = np.load(folder / "ranks.npy")
        assert ranks.dtype == np.int32 and len(ranks) == len(run.inputs.split.cases) and ranks.min() >= 1
        stored = json.loads((folder / "result.json").read_text())
        assert stored["evaluation"]["rank_cap"] == 1000 and ranks.max() <= 1001  # above the cap: 1001
        assert record.dataset["synthetic"] is True and "SYNTHETIC" in record.dataset["label"]
    assert not list((results / "xmarket-matching").glob(".tmp-*"))


def test_item2vec_beats_the_sanity_floors(tiny_suite_run) -> None:
    run, _, _ = tiny_suite_run
    for metric in ("HR@50", "NDCG@10"):
        score = {r.method: r.metrics["all"][metric] for r in run.records}
        assert score["item2vec"] > score["popularity"] > score["random"]


def test_every_run_is_in_mlflow_with_its_tags(tiny_suite_run) -> None:
    import mlflow

    run, results, _ = tiny_suite_run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(results / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("xmarket-matching")
    runs = client.search_runs([exp.experiment_id])
    by_key = {r.data.tags["run_key"]: r for r in runs}
    for record in run.records:
        logged = by_key[record.run_key]
        assert logged.data.tags["synthetic"] == "true"
        assert logged.data.tags["manifest_hash"] == record.manifest_hash
        assert logged.data.tags["method"] == record.method
        assert "encoder.text" in logged.data.tags
        assert logged.data.metrics["overlapped/HR_10"] == pytest.approx(record.metrics["overlapped"]["HR@10"])
        assert logged.data.params["method_config.epochs" if record.method == "item2vec" else "seed"]
    item2vec = by_key[next(r.run_key for r in run.records if r.method == "item2vec")]
    history = client.get_metric_history(item2vec.info.run_id, "item2vec_loss")
    assert len(history) >= 2  # a loss curve, one point per epoch


def test_rerun_skips_finished_runs(tiny_suite_run, tiny_data_dir: Path) -> None:
    run, results, _ = tiny_suite_run
    before = {r.run_key: (results / "xmarket-matching" / r.run_key / "result.json").stat().st_mtime_ns
              for r in run.records}
    again = run_suite("xmarket-matching", scale="tiny", methods=["clip", "item2vec", "popularity", "random"],
                      data_dir=tiny_data_dir, results_dir=results, progress=False, echo=lambda s: None)
    assert [r.run_key for r in again.records] == [r.run_key for r in run.records]
    for key, mtime in before.items():
        assert (results / "xmarket-matching" / key / "result.json").stat().st_mtime_ns == mtime


class _Broken(Method):
    """A method that returns garbage, to check the runner refuses it."""

    name = "broken"
    display_name = "Broken"
    requires = frozenset({"ids"})
    mode = "nan"

    def fit(self, train, features, cfg, ctx) -> None:
        self.n = train.n_items

    def item_embeddings(self) -> np.ndarray:
        if self.mode == "nan":
            return np.full((self.n, 4), np.nan, np.float32)
        return np.zeros((self.n + 1, 4), np.float32)


@pytest.mark.parametrize("mode, message", [("nan", "non-finite"), ("shape", "shape")])
def test_bad_method_output_is_refused_without_a_result_folder(tiny_suite_run, monkeypatch, tmp_path, mode, message):
    run, _, _ = tiny_suite_run
    monkeypatch.setattr(_Broken, "mode", mode)
    known = dict(registry.methods())
    known["broken"] = _Broken
    monkeypatch.setattr(registry, "methods", lambda: known)
    (cfg,) = plan("xmarket-matching", scale="tiny", methods=["broken"], allow_extra_methods=True)
    record = execute_run(cfg, run.inputs, tmp_path, tracker=None, progress=False)
    assert record.status == "failed" and message in record.reason and record.reason.startswith("BenchmarkError")
    assert not any(p for p in (tmp_path / "xmarket-matching").glob("*") if p.name != ".failed")
    assert message in Path(record.tags["failure_log"]).read_text()


def test_table1_has_the_papers_shape(tiny_suite_run) -> None:
    from benchmark.reporting.matching import write_suite_reports

    _, results, reports = tiny_suite_run
    text = write_suite_reports("xmarket-matching", results, reports)
    ours = list(csv.reader((reports / "xmarket-matching" / "xmarket-sim-tiny-subset" / "table1.csv").open()))
    paper = list(csv.reader((Path(__file__).parents[1] / "benchmark/reporting/paper/table1_matching_xmarket.csv").open()))
    assert ours[0][:2] == paper[0][:2] == ["test_users", "metric"]
    assert [row[:2] for row in ours[1:]] == [row[:2] for row in paper[1:]]
    assert "SYNTHETIC" in text and "(1.458)" in text  # the paper's CLIP number beside ours
    assert "Paired Wilcoxon" in text and "Holm" in text
    assert (reports / "xmarket-matching" / "xmarket-sim-tiny-subset" / "figure6_head_tail.png").exists()
    claims = (reports / "xmarket-matching" / "xmarket-sim-tiny-subset" / "claims.md").read_text()
    assert "C1" in claims and "C12" in claims and "not run" in claims
    assert json.loads(next((results / "xmarket-matching").glob("*/result.json")).read_text())["schema"] == 3


def test_a_method_whose_inputs_are_missing_is_skipped_with_its_reason(tiny_suite_run, tmp_path) -> None:
    import dataclasses

    from benchmark.features.model import ItemFeatures
    from benchmark.reporting.matching import write_suite_reports

    run, _, _ = tiny_suite_run
    id_only = dataclasses.replace(run.inputs, features=ItemFeatures(items=run.inputs.dataset.items))
    (cfg,) = plan("xmarket-matching", scale="tiny", methods=["cb2cf"])
    record = execute_run(cfg, id_only, tmp_path / "results", tracker=None, progress=False)
    assert record.status == "skipped" and "text" in record.reason
    assert not (tmp_path / "results" / "xmarket-matching" / record.run_key / "ranks.npy").exists()
    text = write_suite_reports("xmarket-matching", tmp_path / "results", tmp_path / "reports")
    assert "- CB2CF: skipped, dataset lacks text" in text


def test_reports_are_keyed_by_dataset_and_scale_and_rewrite_identically(tiny_suite_run, tmp_path) -> None:
    from benchmark.reporting.matching import write_suite_reports

    _, results, _ = tiny_suite_run
    write_suite_reports("xmarket-matching", results, tmp_path)
    out = tmp_path / "xmarket-matching" / "xmarket-sim-tiny-subset"  # 4 of the suite's methods: a subset
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    write_suite_reports("xmarket-matching", results, tmp_path, scale="tiny")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # no timestamps in PNG/PDF/Markdown
    assert [p.name for p in (tmp_path / "xmarket-matching").iterdir()] == ["xmarket-sim-tiny-subset"]
    text = (out / "report.md").read_text()
    # next-item: popularity/random only, nothing to test; the claims' floor checks the item-to-item methods
    assert "Next-item retrieval" in text and "Competence on the next-item protocol" not in text
    assert "Competence floor: " in text
    assert (out / "next_item.csv").read_text().startswith("test_users,metric,Popularity,Random")


class _TooSmall(Method):
    """A method that finds out during fit that the data cannot support it (e.g. VQ-Rec's PQ on tiny data)."""

    name = "too-small"
    display_name = "TooSmall"
    requires = frozenset({"ids"})

    def fit(self, train, features, cfg, ctx) -> None:
        from benchmark.errors import MissingRequirementError

        raise MissingRequirementError("needs more items than this dataset has")

    def item_embeddings(self) -> np.ndarray:  # pragma: no cover - never reached
        raise AssertionError


def test_a_requirement_found_missing_during_fit_skips_the_run(tiny_suite_run, monkeypatch, tmp_path) -> None:
    run, _, _ = tiny_suite_run
    known = dict(registry.methods())
    known["too-small"] = _TooSmall
    monkeypatch.setattr(registry, "methods", lambda: known)
    (cfg,) = plan("xmarket-matching", scale="tiny", methods=["too-small"], allow_extra_methods=True)
    record = execute_run(cfg, run.inputs, tmp_path, tracker=None, progress=False)
    assert record.status == "skipped" and "needs more items" in record.reason


def test_only_the_features_the_planned_methods_read_are_encoded(tiny_suite_run, tiny_data_dir, tmp_path) -> None:
    """ID methods alone encode nothing; the word-drop view only for a method that uses it; run keys unchanged."""
    from benchmark.inputs import features_needed

    suite_features = plan("xmarket-matching", scale="tiny", methods=["clip"])[0].features
    assert suite_features["word_drop"] > 0  # the suite asks for the view (UniSRec, MISSRec, UniM2Rec)
    need = {name: features_needed(suite_features, [registry.get_method(name)])
            for name in ("popularity", "clip", "unisrec", "missrec", "unim2rec")}
    assert need["popularity"]["text_encoder"] is None and need["popularity"]["image_encoder"] is None
    assert need["clip"]["text_encoder"] == "minilm" and need["clip"]["image_encoder"] == "offline-descriptor"
    assert need["clip"]["word_drop"] == 0.0
    assert all(need[m]["word_drop"] == suite_features["word_drop"] for m in ("unisrec", "missrec", "unim2rec"))
    both = features_needed(suite_features, [registry.get_method("clip"), registry.get_method("unisrec")])
    assert both["word_drop"] == suite_features["word_drop"] and both["image_encoder"] == "offline-descriptor"

    run, _, _ = tiny_suite_run
    ids = run_suite("xmarket-matching", scale="tiny", methods=["popularity", "random"], data_dir=tiny_data_dir,
                    results_dir=tmp_path, progress=False, echo=lambda s: None)
    assert ids.inputs.features.text is None and ids.inputs.features.image is None
    alongside = {r.method: r.run_key for r in run.records}
    assert {r.method: r.run_key for r in ids.records} == {m: alongside[m] for m in ("popularity", "random")}
    assert all(r.status == "done" for r in ids.records)
