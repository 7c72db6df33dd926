"""Dataset statistics beside XMarket's published figures, for the dataset card and reports.

The UniEmbedding paper (section 5.1) describes its XMarket subset by a few numbers: ~2.65M users
and ~0.14M items after filtering, users touching 1/2/3 domains (65.90 / 30.35 / 3.75 %) and tail
items carrying 10.9 % of interactions. XMarket's own index gives the raw per-domain sizes
(docs/protocol.md 1.2). :func:`format_stats` prints ours next to those, so a reader sees at once how
close a dataset (real or the synthetic twin) is to the paper's.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.model import Dataset, Split
from benchmark.data.split import head_mask

XMARKET_PUBLISHED: dict = {
    "source": (
        "UniEmbedding (Dai et al., CIKM'24) section 5.1 for the filtered subset; "
        "XMarket data/us/index.md for the raw FULL per-domain sizes (docs/protocol.md 1.2)"
    ),
    "users": 2_650_000,  # "~2.65 million users" after keeping users with >= 2 interactions
    "items": 140_000,  # "~0.14 million items"
    "approximate": ("users", "items"),
    "domains_per_user_pct": {"1": 65.90, "2": 30.35, "3": 3.75},
    "tail_share_pct": 10.9,  # tail = bottom 50% of items by training frequency
    "per_domain_raw": {
        "Books": {"users": 4_263_523, "items": 84_656, "interactions": 9_053_776},
        "Electronics": {"users": 2_784_128, "items": 35_943, "interactions": 4_164_363},
        "Cell_Phones_and_Accessories": {"users": 1_729_530, "items": 23_046, "interactions": 2_424_733},
    },
    "interactions_raw_total": 15_642_872,  # sum of the three raw domains, before filtering
}


def _pct(part: float, whole: float) -> float:
    return float(100.0 * part / whole) if whole else 0.0


def dataset_stats(dataset: Dataset, split: Split | None = None) -> dict:
    """Sizes per domain and overall, domain overlap, tail share, cold items, sequence lengths.

    With a split the population is the split's kept users (>= its ``min_interactions``) and the
    tail is the split's (bottom 50% of items by training frequency, the paper's definition);
    without one it is every user with an interaction and the tail by all-interaction frequency.
    """
    inter, items = dataset.interactions, dataset.items
    n_dom, n_items = len(items.domains), len(items)
    min_inter = int(split.meta.get("settings", {}).get("min_interactions", 1)) if split is not None else 1
    user_count = np.bincount(inter.user, minlength=inter.n_users)
    kept_user = user_count >= max(min_inter, 1)
    rows = kept_user[inter.user]
    user, item = inter.user[rows], inter.item[rows]
    dom = items.domain[item].astype(np.int64)
    n_users, n_inter = int(np.count_nonzero(kept_user)), int(len(item))

    touched = np.zeros((inter.n_users, n_dom), dtype=bool)
    touched[user, dom] = True
    item_count = np.bincount(item, minlength=n_items)
    dom_inter = np.bincount(dom, minlength=n_dom)
    dom_items = np.bincount(items.domain, minlength=n_dom)
    dom_items_active = np.bincount(items.domain[item_count > 0], minlength=n_dom)
    dom_users = touched.sum(axis=0)
    per_domain = {
        name: {
            "users": int(dom_users[d]),
            "items": int(dom_items[d]),
            "items_interacted": int(dom_items_active[d]),
            "interactions": int(dom_inter[d]),
            "interaction_share_pct": _pct(dom_inter[d], n_inter),
        }
        for d, name in enumerate(items.domains)
    }
    n_touched = np.bincount(touched[kept_user].sum(axis=1), minlength=n_dom + 1)
    domains_per_user = {str(k): _pct(n_touched[k], n_users) for k in range(1, n_dom + 1)}
    del touched

    if split is not None:
        head = split.item_head
        tail_basis = "training frequency (split)"
    else:
        head = head_mask(item_count)
        tail_basis = "all-interaction frequency"
    lengths = user_count[kept_user]
    stats: dict = {
        "name": dataset.name,
        "synthetic": bool(dataset.synthetic),
        "fingerprint": dataset.fingerprint,
        "population": f"users with >= {max(min_inter, 1)} interactions",
        "domains": list(items.domains),
        "users": n_users,
        "items": int(n_items),
        "items_interacted": int(np.count_nonzero(item_count)),
        "interactions": n_inter,
        "per_domain": per_domain,
        "domains_per_user_pct": domains_per_user,
        "tail_basis": tail_basis,
        "head_items": int(np.count_nonzero(head)),
        "tail_share_pct": _pct(item_count[~head].sum(), n_inter),
        "mean_seq_len": float(lengths.mean()) if n_users else 0.0,
        "median_seq_len": float(np.median(lengths)) if n_users else 0.0,
        "max_seq_len": int(lengths.max()) if n_users else 0,
        "missing_image_pct": (
            _pct(np.count_nonzero(items.image_url == ""), n_items) if items.image_url is not None else None
        ),
    }
    if split is not None:
        stats.update(_split_stats(split))
    return stats


def _split_stats(split: Split) -> dict:
    cases, count = split.cases, split.item_train_count
    n_train = int(count.sum())
    case_items = np.unique(np.r_[cases.query, cases.target])
    cold_items = case_items[count[case_items] == 0]
    c = split.meta.get("counts", {})
    return {
        "tail_share_train_pct": _pct(count[~split.item_head].sum(), n_train),
        "mean_train_seq_len": float(split.train.lengths.mean()) if len(split.train) else 0.0,
        "cold": {
            "items": int(len(cold_items)),
            "target_cases": int(np.count_nonzero(cases.target_cold)),
            "target_cases_pct": _pct(np.count_nonzero(cases.target_cold), len(cases)),
            "query_cases": int(np.count_nonzero(cases.query_cold)),
        },
        "split": {
            "manifest_hash": split.manifest_hash,
            "settings": split.meta.get("settings", {}),
            "train_users": int(len(split.train)),
            "train_interactions": n_train,
            "overlapped_cases": int(np.count_nonzero(cases.overlapped)),
            "unseen_cases": int(np.count_nonzero(~cases.overlapped)),
            "dropped_cases": int(c.get("dropped_cases", 0)),
            "cross_domain_cases_pct": _pct(
                np.count_nonzero(cases.query_domain != cases.target_domain), len(cases)
            ),
        },
    }


# --------------------------------------------------------------------------- formatting


def _fmt(value: object, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{float(value):.2f} %"  # type: ignore[arg-type]
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]], right: bool = True) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) if right else c.ljust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_stats(stats: dict, reference: dict | None = XMARKET_PUBLISHED) -> str:
    """Plain-text tables: 'ours' beside 'published'; the title says SYNTHETIC for simulated data."""
    ref = reference or {}
    title = f"Dataset statistics: {stats['name']}"
    if stats.get("synthetic"):
        title += "  [SYNTHETIC - simulated data, not the real XMarket]"
    out = [title, f"population: {stats['population']}; fingerprint {stats.get('fingerprint', '-')}", ""]

    ref_dpu = ref.get("domains_per_user_pct", {})
    rows = [
        ["users", _fmt(stats["users"]), "~" + _fmt(ref["users"]) if "users" in ref else "-"],
        ["items", _fmt(stats["items"]), "~" + _fmt(ref["items"]) if "items" in ref else "-"],
        ["items with interactions", _fmt(stats["items_interacted"]), "-"],
        ["interactions", _fmt(stats["interactions"]), "-"],
    ]
    for k, share in stats["domains_per_user_pct"].items():
        rows.append([f"users in {k} domain(s)", _fmt(share, pct=True), _fmt(ref_dpu.get(k), pct=True)])
    rows.append(
        [
            f"tail share of interactions ({stats['tail_basis']})",
            _fmt(stats["tail_share_pct"], pct=True),
            _fmt(ref.get("tail_share_pct"), pct=True),
        ]
    )
    if "tail_share_train_pct" in stats:
        rows.append(
            ["tail share of training interactions", _fmt(stats["tail_share_train_pct"], pct=True), "-"]
        )
    rows.append(["mean interactions per user", _fmt(stats["mean_seq_len"]), "-"])
    rows.append(["median interactions per user", _fmt(stats["median_seq_len"]), "-"])
    rows.append(["items without image", _fmt(stats["missing_image_pct"], pct=True), "-"])
    out += [_table(["overall", "ours", "published"], rows), ""]

    ref_dom = ref.get("per_domain_raw", {})
    rows = []
    for name, d in stats["per_domain"].items():
        r = ref_dom.get(name, {})
        rows.append(
            [
                name,
                _fmt(d["users"]),
                _fmt(d["items"]),
                _fmt(d["interactions"]),
                _fmt(d["interaction_share_pct"], pct=True),
                _fmt(r.get("users")),
                _fmt(r.get("items")),
                _fmt(r.get("interactions")),
            ]
        )
    headers = [
        "domain",
        "users",
        "items",
        "interactions",
        "share",
        "raw users",
        "raw items",
        "raw interactions",
    ]
    out += [_table(headers, rows)]
    if ref_dom:
        out.append("(raw = published sizes of the unfiltered XMarket FULL files, docs/protocol.md 1.2)")
    out.append("")

    if "split" in stats:
        s, c = stats["split"], stats["cold"]
        rows = [
            ["manifest hash", s["manifest_hash"][:16]],
            ["settings", ", ".join(f"{k}={v}" for k, v in s["settings"].items())],
            ["train users", _fmt(s["train_users"])],
            ["train interactions", _fmt(s["train_interactions"])],
            ["mean training sequence length", _fmt(stats["mean_train_seq_len"])],
            ["overlapped cases", _fmt(s["overlapped_cases"])],
            ["unseen cases", _fmt(s["unseen_cases"])],
            ["dropped cases (no earlier differing item)", _fmt(s["dropped_cases"])],
            ["cross-domain cases", _fmt(s["cross_domain_cases_pct"], pct=True)],
            ["cold items in test cases", _fmt(c["items"])],
            [
                "cases with a cold target",
                f"{_fmt(c['target_cases'])} ({_fmt(c['target_cases_pct'], pct=True)})",
            ],
            ["cases with a cold query", _fmt(c["query_cases"])],
        ]
        out += [_table(["split", "ours"], rows, right=False), ""]
    if ref.get("source"):
        out.append(f"published: {ref['source']}")
    return "\n".join(out).rstrip() + "\n"
