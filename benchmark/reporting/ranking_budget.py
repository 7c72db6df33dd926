"""What Table 4's cells trained on and how long: the same positives for every row, and early stopping.

A gain over "w/o Emb." means something only if every row saw the same training examples (the
frozen embeddings saw all training data, so the ID tower must too, or the same stated share) and
trained until validation AUC stopped improving. Each cell records both (train.py ``training``:
``train_set`` fingerprint, positives, steps, epochs, stop reason, validation curve); this module
states them beside the table, and names any cell that breaks either rule.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmark.reporting.figures import pyplot, save_figure
from benchmark.store.records import RankingRecord
from benchmark.tasks.ranking.models import DISPLAY, MODELS
from benchmark.tasks.ranking.suite import NONE

HEADER = ["model", "embedding", "seed", "optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason",
          "train_positives", "train_set", "fit_wall_s", "fit_cpu_s"]


def cell_training(r: RankingRecord) -> dict:
    """A cell's training budget (``training``; older cells kept it under ``info``)."""
    return r.training or r.info.get("training") or {}


def training_data(records: list[RankingRecord]) -> tuple[str, list[str]]:
    """A sentence saying which training positives every row used, and the cells that used others.

    The second value lists cells whose training set differs from the most common one (or was not
    recorded): with it non-empty, Table 4's rows do not compare like with like.
    """
    sets: dict[str, list[RankingRecord]] = defaultdict(list)
    for r in records:
        sets[str(cell_training(r).get("train_set") or r.ctr.get("train_set") or "not recorded")].append(r)
    common = max(sets, key=lambda k: len(sets[k]))
    odd = [f"{r.model}+{r.embedding} (seed {r.seed}): train set {k}" for k, recs in sets.items() if k != common
           for r in recs]
    ctr = next(r.ctr for r in sets[common])
    n, n_all = ctr.get("train_positives"), ctr.get("train_positives_all")
    if common == "not recorded" or n_all is None:
        return "Training positives per row: not recorded (cells stored before this was kept).", odd
    share = ("all the training positives" if n == n_all
             else f"a seeded {n / n_all:.1%} sample (max_train_positives {ctr.get('max_train_positives')}) of the "
                  f"{n_all} training positives")
    line = (f"Every row, w/o Emb. included, trained on the same {n} positives ({ctr.get('train_rows')} rows with their "
            f"negatives; train set {common}): {share}, the data the frozen embeddings were fitted on.")
    if odd:
        line = (f"**Rows trained on different examples** ({len(odd)} cell(s) differ from train set {common}): "
                + "; ".join(odd[:4]) + (" ..." if len(odd) > 4 else ""))
    return line, odd


def source_stop_reason(r: RankingRecord, results_dir: Path) -> str:
    """Why the matching run behind a cell's embeddings stopped training ("" for w/o Emb.).

    Recorded in the cell (``embedding_source.stop_reason``); for cells stored before that, read from
    the matching run's result.json when it is still there, else "not recorded".
    """
    if r.embedding == NONE:
        return ""
    src = r.embedding_source or {}
    if src.get("stop_reason"):
        return str(src["stop_reason"])
    path = Path(results_dir) / str(src.get("suite", "")) / str(src.get("run_key", "")) / "result.json"
    try:
        return str((json.loads(path.read_text()).get("training") or {}).get("stop_reason") or "not recorded")
    except (OSError, ValueError):
        return "not recorded"


def source_code_version(r: RankingRecord, results_dir: Path) -> str | None:
    """The code version of the matching run behind a cell's embeddings (None: w/o Emb., or its record is gone)."""
    src = r.embedding_source or {}
    if r.embedding == NONE or not src.get("run_key"):
        return None
    path = Path(results_dir) / str(src.get("suite", "")) / str(src["run_key"]) / "result.json"
    try:
        version = json.loads(path.read_text()).get("code_version")
    except (OSError, ValueError):
        return None
    return str(version) if version else None


def sources_line(records: list[RankingRecord], names: dict[str, str], results_dir: Path) -> str:
    """One line: each embedding row's matching run and whether its own training converged."""
    seen: dict[tuple[str, int], str] = {}
    for r in sorted(records, key=lambda r: (r.embedding, r.embedding_seed)):
        reason = source_stop_reason(r, results_dir)
        if reason:
            seen.setdefault((r.embedding, r.embedding_seed), f"{names.get(r.embedding, r.embedding)} "
                            f"(matching seed {r.embedding_seed}, run {r.embedding_source.get('run_key', '?')}): {reason}")
    if not seen:
        return "Embeddings: none (w/o Emb. only)."
    return ("Embeddings and how their own training stopped (a row whose method did not converge makes C9 "
            "inconclusive): " + "; ".join(seen.values()) + ".")


def stopping_line(records: list[RankingRecord]) -> str:
    """The early-stopping rule the cells ran under (from their configs)."""
    rules = sorted({(c.get("patience"), c.get("min_delta", 0.0), c.get("plateau_lr_factor", 1.0),
                     c.get("max_epochs", c.get("epochs"))) for c in (r.config.get("training", {}) for r in records)},
                   key=str)
    text = "; ".join(f"patience {p} epochs without a validation-AUC gain above {d:g}, "
                     + ("learning rate kept" if f == 1 else f"learning rate x{f:g} after each such epoch")
                     + f", safety cap {cap} epochs" for p, d, f, cap in rules)
    return f"Early stopping on validation AUC ({text}); the best epoch's weights are restored before testing."


def budget_rows(records: list[RankingRecord]) -> list[list[str]]:
    """``training_budget.csv`` rows, one per cell."""
    rows = []
    for r in sorted(records, key=lambda r: (list(MODELS).index(r.model) if r.model in MODELS else 99, r.embedding, r.seed)):
        t = cell_training(r)
        rows.append([r.model, r.embedding, str(r.seed), str(t.get("optimizer_steps", "")), str(t.get("examples_seen", "")),
                     str(t.get("epochs", r.info.get("epochs_run", ""))), str(t.get("best_epoch", r.info.get("best_epoch"))),
                     str(t.get("stop_reason", "not recorded")), str(t.get("train_positives", "")),
                     str(t.get("train_set", "")), str(t.get("fit_wall_s", r.timings.get("fit_s", ""))),
                     str(t.get("fit_cpu_s", ""))])
    return rows


def budget_table(records: list[RankingRecord], order: list[str], names: dict[str, str]) -> list[str]:
    """Markdown: per model and row, mean steps and fit time over seeds, epochs, best epochs and stop reasons."""
    cells: dict[tuple[str, str], list[RankingRecord]] = defaultdict(list)
    for r in records:
        cells[(r.model, r.embedding)].append(r)
    lines = ["| model | embeddings | seeds | optimizer steps | examples seen | epochs | best epoch | stop | fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in [m for m in MODELS if any(k[0] == m for k in cells)]:
        for e in order:
            recs = sorted(cells.get((m, e), []), key=lambda r: r.seed)
            if not recs:
                continue
            ts = [cell_training(r) for r in recs]
            stops: dict[str, int] = defaultdict(int)
            for t in ts:
                stops[str(t.get("stop_reason", "not recorded"))] += 1
            lines.append(
                f"| {DISPLAY[m]} | {names.get(e, e)} | {len(recs)} | {np.mean([t.get('optimizer_steps', 0) for t in ts]):.0f} | "
                f"{np.mean([t.get('examples_seen', 0) for t in ts]):.0f} | {'/'.join(str(t.get('epochs', '-')) for t in ts)} | "
                f"{'/'.join(str(t.get('best_epoch', '-')) for t in ts)} | "
                f"{', '.join(f'{k} {v}/{len(ts)}' for k, v in sorted(stops.items()))} | "
                f"{np.mean([float(t.get('fit_wall_s', 0.0)) for t in ts]):.1f} |")
    return lines


def ranking_curves(records: list[RankingRecord], names: dict[str, str], title: str, out: Path) -> list[Path] | None:
    """Validation AUC vs optimizer steps: one panel per model, one line per row (its lowest seed)."""
    first: dict[tuple[str, str], RankingRecord] = {}
    for r in sorted(records, key=lambda r: r.seed):
        if cell_training(r).get("curve"):
            first.setdefault((r.model, r.embedding), r)
    models = [m for m in MODELS if any(k[0] == m for k in first)]
    if not models:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        for (mm, e), r in sorted(first.items()):
            if mm != m:
                continue
            steps, values = zip(*cell_training(r)["curve"], strict=True)
            ax.plot(steps, values, marker=".", label=f"{names.get(e, e)} ({cell_training(r).get('stop_reason', '?')})")
        ax.set_title(DISPLAY[m], fontsize=9)
        ax.set_xlabel("optimizer steps")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("validation AUC")
    fig.suptitle(title, fontsize=9)
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths
