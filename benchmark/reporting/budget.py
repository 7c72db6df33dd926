"""What each run spent training and why it stopped: ``training_budget.csv``, a table and the learning curves.

A comparison is only as good as the training behind it: a method that ran to its epoch cap did
not converge, and a claim that rests on it is "inconclusive" (reporting/claims.py). The budget
comes from each run's ``training`` record (methods/shared/training.py TrainingBudget, fit wall
and CPU seconds measured by the runner).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.reporting.figures import pyplot, save_figure
from benchmark.store.records import RunRecord

HEADER = ["method", "seed", "optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason",
          "fit_wall_s", "fit_cpu_s"]
#: Stop reasons that mean "this run's training is settled": early stopping on validation, or no training at all.
SETTLED = ("converged", "untrained")


def stop_reason(record: RunRecord) -> str:
    """Why a run's training ended; "not recorded" for runs made before budgets were kept."""
    return str(record.training.get("stop_reason") or "not recorded")


def not_converged(records: list[RunRecord]) -> list[str]:
    """``method (seed s): reason`` for each finished run whose training did not settle."""
    return [f"{r.method} (seed {r.seed}): {stop_reason(r)}" for r in records
            if r.status == "done" and stop_reason(r) not in SETTLED]


def budget_rows(records: list[RunRecord]) -> list[list[str]]:
    def cell(value: object) -> str:
        return "" if value is None else str(value)

    rows = []
    for r in sorted((r for r in records if r.status == "done"), key=lambda r: (r.method, r.seed)):
        t = r.training
        rows.append([r.method, str(r.seed), cell(t.get("optimizer_steps")), cell(t.get("examples_seen")),
                     cell(t.get("epochs")), cell(t.get("best_epoch")), stop_reason(r),
                     cell(t.get("fit_wall_s", r.timings.get("fit_s"))), cell(t.get("fit_cpu_s"))])
    return rows


def budget_markdown(rows: list[list[str]]) -> list[str]:
    lines = ["### Training budget", "",
             "Per run: optimizer steps, training examples seen, epochs, the epoch whose weights were kept, and "
             "why training stopped (converged = early stopping on validation; max_epochs = the safety cap, "
             "not converged). A claim resting on a run that did not converge is inconclusive.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def learning_curves(records: list[RunRecord], title: str, out: Path) -> list[Path] | None:
    """Validation metric vs optimizer steps, one line per method (its lowest seed); None without curves."""
    first: dict[str, RunRecord] = {}
    for r in sorted(records, key=lambda r: r.seed):
        if r.status == "done" and r.training.get("curve"):
            first.setdefault(r.method, r)
    if not first:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, r in sorted(first.items()):
        steps, values = zip(*r.training["curve"], strict=True)
        ax.plot(steps, values, marker=".", label=f"{method} ({stop_reason(r)})")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("validation metric (each method's own, see training_budget.csv)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths
