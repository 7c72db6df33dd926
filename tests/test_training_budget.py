"""The training budget: optimizer steps counted by hook, the validation curve, why training stopped."""

from __future__ import annotations

import torch
from torch import nn

from methods.shared.training import STOP_REASONS, EarlyStopping, TrainingBudget, combine_budgets


def _train(budget: TrainingBudget, scores: list[float], patience: int, steps_per_epoch: int = 3) -> int:
    net = nn.Linear(2, 1)
    opt = budget.watch(torch.optim.SGD(net.parameters(), lr=0.1))
    stopper = EarlyStopping(patience, "test", budget=budget)
    for epoch, score in enumerate(scores):
        for _ in range(steps_per_epoch):
            opt.zero_grad()
            net(torch.ones(4, 2)).sum().backward()
            opt.step()
            budget.saw(4)
        if stopper.update(score, net, epoch):
            return epoch
    return len(scores) - 1


def test_patience_running_out_is_converged_with_the_curve_and_the_best_epoch():
    budget = TrainingBudget("finetune")
    last = _train(budget, [0.1, 0.3, 0.2, 0.25, 0.28, 0.9], patience=3)
    d = budget.as_dict()
    assert last == 4 and d["stop_reason"] == "converged" and d["best_epoch"] == 1
    assert d["optimizer_steps"] == 15 and d["examples_seen"] == 60 and d["epochs"] == 5
    assert d["curve"] == [[3, 0.1], [6, 0.3], [9, 0.2], [12, 0.25], [15, 0.28]]


def test_running_to_the_cap_is_max_epochs_not_converged():
    budget = TrainingBudget()
    _train(budget, [0.1, 0.2, 0.3], patience=3)
    assert budget.as_dict()["stop_reason"] == "max_epochs" and budget.as_dict()["best_epoch"] == 2
    assert set(STOP_REASONS) >= {"converged", "max_epochs", "time_limit"}


def test_stages_add_up_and_the_last_stage_decides():
    pre, fine = TrainingBudget("pretrain"), TrainingBudget("finetune")
    _train(pre, [0.1, 0.2], patience=5, steps_per_epoch=2)
    _train(fine, [0.5, 0.4, 0.3], patience=2, steps_per_epoch=1)
    t = combine_budgets(pre, fine)
    assert t["optimizer_steps"] == 4 + 3 and t["epochs"] == 2 + 3 and t["examples_seen"] == 16 + 12
    assert t["stop_reason"] == "converged" and t["best_epoch"] == 0
    assert [s["stage"] for s in t["stages"]] == ["pretrain", "finetune"] and t["stages"][0]["stop_reason"] == "max_epochs"


def test_every_run_records_its_budget_and_the_report_shows_it(tiny_suite_run):
    import csv
    import json

    from benchmark.reporting.matching import write_suite_reports

    run, results, reports = tiny_suite_run
    by = {r.method: r for r in run.records}
    assert by["popularity"].training["stop_reason"] == "untrained"
    i2v = by["item2vec"].training  # early stopping on the validation carve-out ([proposal]) before the cap
    assert i2v["stop_reason"] == "converged" and 0 < i2v["epochs"] < 20 and i2v["examples_seen"] > 0
    assert i2v["best_epoch"] is not None and len(i2v["curve"]) == i2v["epochs"]
    assert i2v["fit_wall_s"] > 0 and i2v["fit_cpu_s"] >= 0
    stored = json.loads((results / "xmarket-matching" / by["item2vec"].run_key / "result.json").read_text())
    assert stored["training"]["stop_reason"] == "converged"
    text = write_suite_reports("xmarket-matching", results, reports)
    assert "### Training budget" in text and "| item2vec | 0 |" in text
    folder = next((reports / "xmarket-matching").glob("*tiny*"))
    rows = list(csv.DictReader((folder / "training_budget.csv").open()))
    assert {r["method"]: r["stop_reason"] for r in rows}["popularity"] == "untrained"


def test_curve_names_with_commas_survive_the_curves_file(tmp_path):
    """A budget's metric text becomes a curve name: curves.csv is CSV-quoted, so a comma cannot break logging."""
    from benchmark.store.sync import _curves, write_curves

    curves = [("valid/NDCG@10 (item-to-item, query excluded)", 0.25, 3), ("loss", 1.5, 0)]
    write_curves(tmp_path / "curves.csv", curves)
    assert _curves(tmp_path) == curves
