"""Table 4 compares like with like: every row trains on the same positives, to early stopping, and the
report says where the gain comes from (AUC on overlapped / unseen users and head / tail items)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.errors import ConfigError
from benchmark.grid.plan import plan
from benchmark.inputs import prepare_inputs
from benchmark.reporting.ranking import check_c9, write_ranking_reports
from benchmark.reporting.ranking_gains import gain_paragraph, group_summary
from benchmark.store.records import RankingRecord
from benchmark.tasks.ranking.data import CTRPart, build_ctr
from benchmark.tasks.ranking.suite import load_ranking_suite, resolve_cells, run_ranking_suite
from benchmark.tasks.ranking.train import group_metrics, row_groups


@pytest.fixture(scope="module")
def tiny_cells(tiny_suite_run, tiny_data_dir: Path):
    """The tiny ranking grid for two rows (w/o Emb. and Item2Vec) x the three models."""
    _, results, reports = tiny_suite_run
    run = run_ranking_suite("xmarket-ranking", scale="tiny", methods=["item2vec"], data_dir=tiny_data_dir,
                            results_dir=results, progress=False, echo=lambda s: None)
    return run, results, reports


def test_every_row_trains_on_the_same_positives_all_of_them(tiny_cells, tiny_data_dir: Path) -> None:
    run, _, _ = tiny_cells
    none = [r for r in run.records if r.embedding == "none"]
    item2vec = [r for r in run.records if r.embedding == "item2vec"]
    assert len(none) == len(item2vec) == 3
    first = plan("xmarket-matching", scale="tiny")[0]
    inputs = prepare_inputs(first.dataset, first.split, {"text_encoder": None, "image_encoder": None,
                                                         "batch_size": 64, "word_drop": 0.0}, tiny_data_dir, "tiny", False)
    every = build_ctr(inputs.split, inputs.train, negatives=5, max_history=5, validation_fraction=0.1,
                      max_validation=500, max_train_positives=None, seed=0)
    for r in run.records:  # each cell says what it trained on: the full set of training positives
        assert r.training["train_set"] == every.train.fingerprint(), (r.model, r.embedding)
        assert r.training["train_positives"] == every.train_positives_all == every.train.n_positives
        assert r.ctr["train_fraction"] == 1.0
    # a sample would be another example set, and the report would say so
    sample = build_ctr(inputs.split, inputs.train, negatives=5, max_history=5, validation_fraction=0.1,
                       max_validation=500, max_train_positives=every.train.n_positives // 2, seed=0)
    assert sample.train.fingerprint() != every.train.fingerprint()
    assert sample.describe()["train_fraction"] == pytest.approx(0.5, abs=1e-3)


def test_report_rebuilds_table4_from_stored_cells(tiny_cells, tmp_path: Path, capsys) -> None:
    _, results, _ = tiny_cells
    code = main(["report", "--suite", "xmarket-ranking", "--results-dir", str(results), "--reports-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "xmarket-ranking" / "xmarket-sim-tiny"
    assert {"table4.csv", "table4_groups.csv", "training_budget.csv", "learning_curves.png", "report.md"} <= {
        p.name for p in folder.iterdir()}
    text = (folder / "report.md").read_text()
    assert "Every row, w/o Emb. included, trained on the same" in text and "**Where the gain comes from.**" in text


def test_every_tiny_cell_stops_by_early_stopping(tiny_cells) -> None:
    run, _, _ = tiny_cells
    for r in run.records:
        t = r.training
        assert t["stop_reason"] == "converged", (r.model, r.embedding, t["epochs"], t["curve"])
        assert t["epochs"] < t["max_epochs"] and t["epochs"] - t["best_epoch"] - 1 == t["patience"]
        assert {"overlapped/auc", "unseen/auc", "head/auc", "tail/auc"} <= set(r.metrics)


def test_the_presets_train_every_row_on_all_positives_under_one_data_config() -> None:
    suite = load_ranking_suite("xmarket-ranking")
    for scale in ("tiny", "small"):
        _, _, cells = resolve_cells(suite, scale, embeddings=["uae", "uniembedding"])
        assert {c.embedding for c in cells} == {"none", "uae", "uniembedding"}
        assert all(c.data == cells[0].data for c in cells) and cells[0].data["max_train_positives"] is None
        assert all(c.training["patience"] < c.training["max_epochs"] for c in cells)


def test_a_cap_at_or_below_the_patience_is_refused() -> None:
    suite = load_ranking_suite("xmarket-ranking")
    with pytest.raises(ConfigError, match="training.patience .* must be below training.max_epochs"):
        resolve_cells(suite, "tiny", overrides=("training.max_epochs=3", "training.patience=3"))
    with pytest.raises(ConfigError, match="training.plateau_lr_factor"):
        resolve_cells(suite, "tiny", overrides=("training.plateau_lr_factor=1.5",))


def test_head_tail_and_user_group_aucs_by_hand() -> None:
    """Items 0, 1 are head, 2, 3 tail. Positive 0 (overlapped user) clicked item 0, positive 1 (unseen) item 3."""
    part = CTRPart(history=np.zeros((2, 1), np.int32), positive=np.array([0, 0, 0, 1, 1, 1], np.int32),
                   target=np.array([1, 3, 2, 4, 2, 3], np.int32),  # item index + 1
                   label=np.array([1, 0, 0, 1, 0, 0], np.float32), overlapped=np.array([True, False]))
    scores = np.array([0.9, 0.8, 0.3, 0.4, 0.95, 0.4], np.float32)
    groups = row_groups(part, np.array([True, True, False, False]))
    assert groups["head"].tolist() == [True, False, True, False, True, False]  # the row's candidate item
    assert groups["overlapped"].tolist() == [True, True, True, False, False, False]  # the row's case
    m = group_metrics(part.label, scores, groups)
    # head rows: clicked 0.9 vs unclicked 0.3, 0.95 -> 1 of 2 pairs
    assert m["head/auc"] == pytest.approx(0.5) and m["head/rows"] == 3
    # tail rows: clicked 0.4 vs unclicked 0.8 (lost), 0.4 (tie, half) -> 0.5 of 2 pairs
    assert m["tail/auc"] == pytest.approx(0.25)
    assert m["overlapped/auc"] == pytest.approx(1.0)  # 0.9 beats 0.8 and 0.3
    assert m["unseen/auc"] == pytest.approx(0.25)  # 0.4 loses to 0.95, ties 0.4
    assert m["head/logloss"] == pytest.approx(-(math.log(0.9) + math.log(0.7) + math.log(0.05)) / 3, rel=1e-5)


def _record(model: str, emb: str, auc: float, groups: dict[str, float], train_set: str = "abc") -> RankingRecord:
    return RankingRecord(
        run_key=f"{model}-{emb}", suite="rk", model=model, embedding=emb,
        embedding_display={"none": "w/o Emb.", "uniembedding": "UniEmb"}[emb],
        paper_row={"none": "none", "uniembedding": "UniEmb"}[emb], seed=0, embedding_seed=0, scale="tiny",
        embedding_source={} if emb == "none" else {"run_key": "m1", "stop_reason": "converged"},
        metrics={"auc": auc, "logloss": 0.5, **{f"{g}/auc": v for g, v in groups.items()}},
        config={"training": {"patience": 2, "min_delta": 1e-6, "plateau_lr_factor": 1.0, "max_epochs": 30}},
        ctr={"train_positives": 10, "train_positives_all": 10, "train_rows": 60},
        training={"stop_reason": "converged", "train_set": train_set, "optimizer_steps": 5, "epochs": 4,
                  "best_epoch": 1, "curve": [[1, 0.6], [2, 0.7]]})


def test_the_gain_paragraph_says_the_embeddings_help_most_on_tail_items() -> None:
    records = [_record("dcnv2", "none", 0.70, {"overlapped": 0.72, "unseen": 0.68, "head": 0.66, "tail": 0.60}),
               _record("dcnv2", "uniembedding", 0.80, {"overlapped": 0.80, "unseen": 0.80, "head": 0.70, "tail": 0.75})]
    text = gain_paragraph(group_summary(records), {"none": "w/o Emb.", "uniembedding": "UniEmb"})
    assert "+0.1500 on tail-item rows and +0.0400 on head-item rows" in text
    assert "+0.1200 for unseen and +0.0800 for overlapped users" in text
    assert "The gain is larger on tail items" in text and "Unseen users (histories never trained on) gain more" in text
    records[1].metrics["tail/auc"] = 0.62
    text = gain_paragraph(group_summary(records), {"none": "w/o Emb.", "uniembedding": "UniEmb"})
    assert "The gain is not concentrated on tail items" in text
    records[1].metrics.update({"tail/auc": 0.70, "unseen/auc": 0.765})  # +0.10 vs +0.04 tail/head; +0.085 vs +0.08
    text = gain_paragraph(group_summary(records), {"none": "w/o Emb.", "uniembedding": "UniEmb"})
    assert "The gain is larger on tail items" in text and "gain about the same (within 0.01 AUC)" in text


def test_rows_on_different_training_examples_make_c9_inconclusive_and_the_report_says_so(tmp_path: Path) -> None:
    records = []
    for model in ("dcnv2", "finalmlp", "din"):
        for emb, auc in (("none", 0.70), ("uniembedding", 0.80)):
            records.append(_record(model, emb, auc, {"overlapped": auc, "unseen": auc, "head": auc, "tail": auc},
                                   train_set="small-sample" if (model, emb) == ("din", "none") else "all"))
            folder = tmp_path / "rk" / records[-1].run_key
            folder.mkdir(parents=True)
            np.save(folder / "test_labels.npy", np.tile([0.0, 1.0], 20))
            np.save(folder / "test_scores.npy", np.random.default_rng(0).random(40))
            records[-1].write(folder)
    claim = check_c9(records, tmp_path)
    assert claim.status.startswith("inconclusive (rows trained on different examples: din+none")
    text = write_ranking_reports("rk", tmp_path, tmp_path / "reports")
    assert "**Rows trained on different examples**" in text and "din+none (seed 0): train set small-sample" in text
    assert "UniEmb (matching seed 0, run m1): converged" in text
    records[-2].training["train_set"] = "all"
    assert check_c9(records, tmp_path).status == "holds"


def test_a_cells_embeddings_name_the_code_version_that_made_them(tmp_path: Path) -> None:
    from benchmark.reporting.ranking_budget import source_code_version

    cell = _record("din", "uniembedding", 0.8, {})
    cell.embedding_source = {"suite": "mx", "run_key": "m1", "stop_reason": "converged"}
    assert source_code_version(cell, tmp_path) is None  # the matching run's record is gone
    (tmp_path / "mx" / "m1").mkdir(parents=True)
    (tmp_path / "mx" / "m1" / "result.json").write_text('{"code_version": "0.1.0+g86089c1"}')
    assert source_code_version(cell, tmp_path) == "0.1.0+g86089c1"
    assert source_code_version(_record("din", "none", 0.7, {}), tmp_path) is None
