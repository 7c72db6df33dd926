"""Where Table 4's gain comes from: AUC per test group (users overlapped / unseen, items head / tail).

The ranking cells store the AUC of four groups of test rows (benchmark/tasks/ranking/train.py
``row_groups``): rows of overlapped vs unseen users' cases, and rows whose candidate item is a head
vs a tail item (top 50% of items by training frequency). Item IDs are weakest on tail items (few or
no training rows for their ID embedding): if the pretrained vectors help most there, the gain is
the embeddings standing in for weak IDs; if not, they add something IDs learn too. This module
turns the stored group AUCs into a table and one paragraph that says which it is, with the numbers.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from benchmark.store.records import RankingRecord
from benchmark.tasks.ranking.models import DISPLAY
from benchmark.tasks.ranking.suite import NONE
from benchmark.tasks.ranking.train import GROUPS

SAME = 0.01  # AUC: group gains closer than this are read as "about the same" (the differences are not tested)
HEADER = ["model", "embedding", "seeds", "auc"] + [f"{g}_auc" for g in GROUPS] + [f"{g}_gain" for g in GROUPS]


def group_summary(records: list[RankingRecord]) -> dict[tuple[str, str], dict[str, float]]:
    """(model, embedding) -> mean over seeds of the overall and each group's test AUC (nan when not stored)."""
    cells: dict[tuple[str, str], list[RankingRecord]] = defaultdict(list)
    for r in records:
        cells[(r.model, r.embedding)].append(r)
    out = {}
    for key, recs in cells.items():
        row = {"auc": float(np.mean([r.metrics["auc"] for r in recs])), "seeds": len(recs)}
        for g in GROUPS:
            values = [r.metrics.get(f"{g}/auc", float("nan")) for r in recs]
            row[g] = float(np.mean(values))
        out[key] = row
    return out


def gains(summary: dict[tuple[str, str], dict[str, float]]) -> dict[tuple[str, str], dict[str, float]]:
    """(model, embedding) -> each group's AUC minus w/o Emb.'s for the same model (embedding rows only)."""
    out = {}
    for (model, emb), row in summary.items():
        base = summary.get((model, NONE))
        if emb == NONE or base is None:
            continue
        out[(model, emb)] = {g: row[g] - base[g] for g in ("auc", *GROUPS)}
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else float("nan")


def gain_paragraph(summary: dict[tuple[str, str], dict[str, float]], names: dict[str, str]) -> str:
    """One paragraph: where the embeddings' AUC gain comes from, with the averages that say so."""
    up = gains(summary)
    if not up:
        return ("**Where the gain comes from.** Not measured: it needs the w/o Emb. cells and at least one "
                "embedding row of the same model.")
    if any(v != v for g in up.values() for v in g.values()):
        return ("**Where the gain comes from.** Not measured: some cells were stored before the group AUCs "
                "(overlapped / unseen users, head / tail items) were recorded; rerun them.")
    avg = {g: _mean([v[g] for v in up.values()]) for g in GROUPS}
    base = {g: _mean([row[g] for (m, e), row in summary.items() if e == NONE]) for g in GROUPS}
    tail_more = sum(v["tail"] > v["head"] for v in up.values())
    unseen_more = sum(v["unseen"] > v["overlapped"] for v in up.values())
    n, models, rows = len(up), len({m for m, _ in up}), len({e for _, e in up})
    if abs(avg["tail"] - avg["head"]) < SAME:
        items = (f"Tail and head items gain about the same (within {SAME} AUC): the embeddings are not mainly a "
                 "stand-in for weak IDs.")
    elif avg["tail"] > avg["head"]:
        items = ("The gain is larger on tail items, where item IDs are weakest (their ID rows had little or no "
                 "training data): the pretrained vectors stand in for IDs that could not be learned.")
    else:
        items = ("The gain is not concentrated on tail items: the embeddings add more where IDs are well trained, "
                 "so they are not mainly a stand-in for weak IDs.")
    if abs(avg["unseen"] - avg["overlapped"]) < SAME:
        users = f"Unseen users (histories never trained on) and overlapped ones gain about the same (within {SAME} AUC)."
    elif avg["unseen"] > avg["overlapped"]:
        users = "Unseen users (histories never trained on) gain more than overlapped ones."
    else:
        users = "Unseen users (histories never trained on) gain less than overlapped ones."
    per_row = "; ".join(
        f"{names.get(e, e)}: tail {_mean([v['tail'] for (m, ee), v in up.items() if ee == e]):+.4f} / head "
        f"{_mean([v['head'] for (m, ee), v in up.items() if ee == e]):+.4f}"
        for e in dict.fromkeys(e for _, e in up))
    return (f"**Where the gain comes from.** Averaged over {rows} embedding row(s) and {models} model(s), the "
            f"embeddings raise test AUC by {avg['tail']:+.4f} on tail-item rows and {avg['head']:+.4f} on head-item "
            f"rows, and by {avg['unseen']:+.4f} for unseen and {avg['overlapped']:+.4f} for overlapped users "
            f"(w/o Emb. itself: tail {base['tail']:.4f}, head {base['head']:.4f}, unseen {base['unseen']:.4f}, "
            f"overlapped {base['overlapped']:.4f}). {items} {users} Tail gains exceed head gains in {tail_more} of "
            f"{n} (model, row) pairs, unseen gains exceed overlapped ones in {unseen_more} of {n}. Per row, mean over "
            f"models: {per_row}. Group AUCs rank each group's clicked rows against its own unclicked rows; the "
            f"differences between groups are point estimates (not tested).")


def group_table(summary: dict[tuple[str, str], dict[str, float]], order: list[str], names: dict[str, str],
                models: list[str]) -> tuple[list[list[str]], list[str]]:
    """CSV rows (``HEADER``) and Markdown lines of the per-group AUCs, gains over w/o Emb. in brackets."""
    up = gains(summary)
    csv_rows, md = [], ["| model | embeddings | AUC | " + " | ".join(f"{g} AUC" for g in GROUPS) + " |",
                        "|---|---|---|" + "---|" * len(GROUPS)]
    for m in models:
        for e in order:
            row = summary.get((m, e))
            if row is None:
                continue
            g = up.get((m, e))
            cells = [f"{row[k]:.4f}" + (f" ({g[k]:+.4f})" if g else "") for k in ("auc", *GROUPS)]
            md.append(f"| {DISPLAY[m]} | {names.get(e, e)} | " + " | ".join(cells) + " |")
            csv_rows.append([m, names.get(e, e), str(row["seeds"]), f"{row['auc']:.4f}"]
                            + [f"{row[k]:.4f}" for k in GROUPS] + [f"{g[k]:.4f}" if g else "" for k in GROUPS])
    return csv_rows, md
