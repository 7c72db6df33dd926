"""What each transfer condition trained on and why it stopped: the budgets beside Tables 6-9 and the share-cap check.

A data-scaling table (Table 7: source shares, Table 8: target shares) only measures the amount of
data when the shares really train on different amounts: a per-epoch step cap that every share
exceeds would feed them all the same number of sequences. The grid scales its caps with the
share (benchmark/tasks/transfer/stages.py ``share_cap``); this module reads what each condition
recorded (its stages' sequences, step cap and sequences per epoch) and says whether that held.
A condition counts as converged when its last stage stopped by early stopping and no earlier
stage that validated (a curve) ran into its cap; stages without validation are fixed by design.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.reporting.budget import SETTLED
from benchmark.reporting.figures import pyplot, save_figure

#: kind -> (stage tag, the cap's config key after max_steps_per_epoch, words for the message)
KINDS = {"source": ("-source", None, "source pretraining", "source"),
         "target": ("-target", "target_max_steps_per_epoch", "fine-tuning", "target")}
CSV_HEADER = ["condition", "seed", "run_key", "optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason",
              "source_steps", "target_steps", "fit_wall_s"]


def training(record: dict) -> dict:
    """The condition's recorded training budget ({} for records made before budgets were kept)."""
    return (record.get("stats") or {}).get("training") or {}


def condition_stop(record: dict) -> str:
    """Why the condition's training ended: the last stage's reason, unless an earlier validated stage hit its cap."""
    t = training(record)
    if not t:
        return "not recorded"
    for st in (t.get("stages") or [])[:-1]:
        if st.get("curve") and st.get("stop_reason") not in SETTLED:
            return f"{st.get('stop_reason')} ({st.get('stage')})"
    return str(t.get("stop_reason") or "not recorded")


def source_target(record: dict) -> tuple[dict[str, int] | None, dict[str, int]]:
    """(the stages before the last: source pretraining, or None; the last stage: target training) steps/examples/epochs."""
    t = training(record)
    stages = t.get("stages") or [t]
    keys = ("optimizer_steps", "examples_seen", "epochs")

    def total(parts: list[dict]) -> dict[str, int]:
        return {k: sum(int(p.get(k) or 0) for p in parts) for k in keys}

    return (total(stages[:-1]) if len(stages) > 1 else None), total(stages[-1:])


def _per_seed(recs: list[dict], key: str) -> str:
    out = []
    for r in recs:
        pre, last = source_target(r)
        out.append(f"{pre[key]} + {last[key]}" if pre is not None else str(last[key]))
    return " / ".join(out) if out else "-"


def _stops(recs: list[dict]) -> str:
    reasons = [condition_stop(r) for r in recs]
    if reasons and len(set(reasons)) == 1:
        return f"{reasons[0]} (all {len(reasons)})"
    return " / ".join(reasons) or "-"


def budget_rows(groups: list[tuple[str, list[dict]]]) -> list[list[str]]:
    """One row per condition of a table: seeds, then per seed (in seed order) steps, examples, epochs, stop reason."""
    return [[label, ",".join(str(r["condition"]["seed"]) for r in recs), _per_seed(recs, "optimizer_steps"),
             _per_seed(recs, "examples_seen"), _per_seed(recs, "epochs"), _stops(recs)]
            for label, recs in groups if recs]


BUDGET_HEADER = ["condition", "seeds", "optimizer steps", "examples seen", "epochs", "stop reason"]
BUDGET_NOTE = ("Training budget per seed (in seed order; `a + b` = source pretraining + target training): "
               "converged = early stopping on the validation carve-out; max_epochs = the safety cap (not converged); "
               "a stage without validation (TransRec's stage 1, UniSRec's pretraining) trains fixed epochs.")


def _stage(record: dict, tag: str, number: int) -> dict:
    stages = (record.get("stats") or {}).get("stages") or []
    return next((st for st in stages if st.get("stage") == number and st.get("tag") == tag), {})


def share_data(records: list[dict], kind: str, fraction: float, number: int = 2) -> dict[str, Any] | None:
    """A share's data per epoch in one stage (``number``) of its first-seed TransRec record, or None if not recorded.

    Records older than the scaled caps have no ``examples_per_epoch``: it is then min(sequences,
    cap x batch) with the cap of the record's config (the same for every share, as it was)."""
    tag, key, _, _ = KINDS[kind]
    recs = sorted((r for r in records if r["condition"]["method"] == "transrec" and r["condition"]["end_to_end"]
                   and r["condition"]["source_fraction"] == (fraction if kind == "source" else 1.0)
                   and r["condition"]["target_fraction"] == (1.0 if kind == "source" else fraction)),
                  key=lambda r: r["condition"]["seed"])
    if not recs:
        return None
    cfg, st = recs[0].get("method_config", {}), _stage(recs[0], tag, number)
    cap = st.get("max_steps_per_epoch", (key and cfg.get(key)) or cfg.get("max_steps_per_epoch"))
    n = st.get("sequences", recs[0].get("target_train_sequences") if kind == "target" else None)
    if cap is None or n is None:
        return None
    batch = int(st.get("batch_size", cfg.get("batch_size", 1)))
    per_epoch = int(st.get("examples_per_epoch", min(int(n), int(cap) * batch)))
    seen = [sum(int(s.get("examples_seen") or 0) for s in (training(r).get("stages") or []) if str(s.get("stage", "")).endswith(tag))
            for r in recs]
    every = st.get("valid_every_steps")  # absent before the fixed validation rule: every epoch of the share
    rule = (f"{every} steps" if every else "each epoch") + (f", patience {st['patience']}" if "patience" in st else "")
    return {"share": fraction, "sequences": int(n), "cap": int(cap), "batch": batch, "per_epoch": per_epoch,
            "capped": int(n) > per_epoch, "examples_seen": seen, "cases": st.get("cases"),
            "valid_every": rule,
            "best_valid": [best_valid(r, f"stage{number}{tag}") for r in recs], "same_cases": every is not None}


def best_valid(record: dict, stage: str) -> float | None:
    """The best validation score of one stage (the state early stopping restored), or None without a curve."""
    return max((float(v) for _, v in last_curve(record, stage)), default=None)


def short_pair(records: list[dict], kind: str, fractions: list[float]) -> tuple[dict, dict] | None:
    """(larger share, smaller share) whose larger one looks under-trained, or None: on the same validation cases
    (``transfer.validation: full``), its mean best score stays below every seed's best of the smaller share,
    which saw less data."""
    rows = [d for f in sorted(fractions) if (d := share_data(records, kind, f)) is not None]
    if not rows or not all(d["same_cases"] and d["best_valid"] and None not in d["best_valid"] for d in rows):
        return None
    for big in reversed(rows):
        for small in rows:
            if small["share"] >= big["share"]:
                break
            if np.mean(big["best_valid"]) < min(small["best_valid"]):
                return big, small
    return None


def stopped_short(records: list[dict], kind: str, fractions: list[float]) -> str:
    """Why a larger share's stage looks under-trained (:func:`short_pair`), or ""."""
    pair = short_pair(records, kind, fractions)
    if pair is None:
        return ""
    big, small = pair
    _, _, stage_words, data_words = KINDS[kind]
    return (f"the {100 * big['share']:g}% {data_words} share's {stage_words} stopped at a lower validation "
            f"NDCG@10 (mean best {float(np.mean(big['best_valid'])):.4f}) than every seed of the "
            f"{100 * small['share']:g}% share ({' / '.join(f'{v:.4f}' for v in small['best_valid'])}) on the same "
            f"{big['cases']} validation cases: with more data it should do at least as well, so early stopping most "
            f"likely ended it on a noisy curve before it had trained enough: under-trained (a larger patience or "
            f"more validation cases would tell)")


def capped_shares(records: list[dict], kind: str, fractions: list[float]) -> str:
    """Why a share-scaling trend cannot be read, or "": a larger share capped to no more sequences per epoch than a smaller one."""
    _, _, stage_words, data_words = KINDS[kind]
    for number in ((1, 2) if kind == "source" else (2,)):
        rows = [d for f in sorted(fractions) if (d := share_data(records, kind, f, number)) is not None]
        same = {i for i, (a, b) in enumerate(zip(rows, rows[1:], strict=False)) if b["capped"] and b["per_epoch"] <= a["per_epoch"]}
        if same:
            shown = sorted(same | {i + 1 for i in same})
            over = ", ".join(f"{100 * rows[i]['share']:g}% ({rows[i]['sequences']} sequences)" for i in shown)
            top = rows[max(shown)]
            return (f"the preset caps each {stage_words} epoch at {top['cap']} steps x {top['batch']} sequences, fewer "
                    f"than the {data_words} shares {over} hold, so these shares train on the same amount of "
                    f"{data_words} data (run a preset without the cap, or with one scaled with the share)")
    return ""


def share_table(records: list[dict], kind: str, fractions: list[float]) -> list[str]:
    """Markdown lines: each share's sequences, step cap and sequences per epoch, examples seen, and the check's verdict."""
    _, _, stage_words, data_words = KINDS[kind]
    rows = [d for f in sorted(fractions) if (d := share_data(records, kind, f)) is not None]
    if not rows:
        return [f"Data per {data_words} share: not recorded by these runs.", ""]
    header = [f"{data_words} share", "sequences", "step cap / epoch", "sequences / epoch",
              f"{data_words} examples seen (per seed)", "validation cases", "validated every (stopping rule)",
              "best valid NDCG@10 (per seed)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([f"{100 * d['share']:g}%", str(d["sequences"]),
                                 str(d["cap"]) + ("" if d["capped"] else " (not reached)"),
                                 str(d["per_epoch"]) + (" (capped)" if d["capped"] else ""),
                                 " / ".join(map(str, d["examples_seen"])),
                                 "-" if d["cases"] is None else str(d["cases"]), d["valid_every"],
                                 " / ".join("-" if v is None else f"{v:.4f}" for v in d["best_valid"])]) + " |"
              for d in rows]
    capped = capped_shares(records, kind, fractions)
    verdict = (f"**Untestable here**: {capped}." if capped else
               f"Checked: every {data_words} share trains on more {data_words} sequences per {stage_words} epoch "
               "than the next smaller one (the step cap scales with the share, or there is none).")
    short = stopped_short(records, kind, fractions)
    if short:
        verdict += f" **Under-trained**: {short}."
    return [f"Data per {data_words} share ({stage_words}, first seed):", "", *lines, "", verdict, ""]


def budget_csv_rows(records: list[dict], label: Any) -> list[list[str]]:
    """``training_budget.csv`` rows: one per condition and seed."""
    def cell(v: object) -> str:
        return "" if v is None else str(v).replace(",", ";")

    rows = []
    for r in sorted(records, key=lambda r: (label(r), r["condition"]["seed"])):
        t = training(r)
        pre, last = source_target(r)
        rows.append([cell(label(r)), str(r["condition"]["seed"]), r["run_key"], cell(t.get("optimizer_steps")),
                     cell(t.get("examples_seen")), cell(t.get("epochs")), cell(t.get("best_epoch")), condition_stop(r),
                     cell(pre and pre["optimizer_steps"]), cell(last["optimizer_steps"]),
                     cell(r.get("timings", {}).get("fit_s", r.get("seconds")))])
    return rows


def last_curve(record: dict, stage: str | None = None) -> list:
    """The validation curve of one stage (``stage``), or of the condition's last stage."""
    t = training(record)
    stages = t.get("stages") or [t]
    st = next((s for s in stages if s.get("stage") == stage), {}) if stage else stages[-1]
    return st.get("curve") or []


def transfer_curves(records: list[dict], label: Any, title: str, out: Path) -> list[Path] | None:
    """Validation NDCG@10 vs optimizer steps of the first seed: source pretraining (stage 2) by source share,
    and the target training of every condition at 100 % of the target (one line each)."""
    seed = min(r["condition"]["seed"] for r in records)
    first = [r for r in records if r["condition"]["seed"] == seed]
    source = sorted((r for r in first if r["condition"]["method"] == "transrec" and r["condition"]["end_to_end"]
                     and r["condition"]["target_fraction"] == 1.0 and last_curve(r, "stage2-source")),
                    key=lambda r: r["condition"]["source_fraction"])
    target = sorted((r for r in first if r["condition"]["target_fraction"] == 1.0 and last_curve(r)
                     and r["condition"].get("source_fraction") in (None, 1.0)), key=label)
    if not source and not target:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, recs, stage, name in ((axes[0], source, "stage2-source", "TransRec source pretraining (stage 2), by source share"),
                                  (axes[1], target, None, "target training, 100 % of the target")):
        for r in recs:
            steps, values = zip(*last_curve(r, stage), strict=True)
            tag = f"src {100 * r['condition']['source_fraction']:g}%" if stage else label(r)
            ax.plot(steps, values, marker=".", label=f"{tag} ({condition_stop(r)})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimizer steps")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("validation NDCG@10")
    fig.suptitle(f"{title} (seed {seed})", fontsize=9)
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths
