"""Is a loaded dataset the paper's XMarket? One decision for every report and claim.

The papers' numbers and claims are about one dataset: XMarket's US Books, Electronics and
Cell_Phones_and_Accessories (UniEmbedding section 5.1). A dataset is that only when its raw
files match the published ones in ``datasets/xmarket.yaml``: the same three domains, each with the
published number of ratings rows and items, and the file's sha256 where the card has one. Anything
else (a subset, other markets, the 5-core or WSDM Cup files, MovieLens, a CSV) is "other": its
claims are informational and the paper's numbers are not printed beside ours. The synthetic twin
is its own kind, "twin": built to XMarket's published statistics as a stand-in, labelled SYNTHETIC.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from benchmark.data.cards import find_card
from benchmark.data.model import Dataset
from benchmark.data.xmarket import LOADER_VERSION as XMARKET_LOADER
from benchmark.fsutil import sha256_file

PAPER = "paper"
TWIN = "twin"
OTHER = "other"
CARD = "xmarket"


def published_files(card: dict | None = None) -> dict[str, dict]:
    """``market/Category`` -> the card's published ratings file (rows, items, sha256)."""
    card = card if card is not None else find_card(CARD) or {}
    out = {}
    for f in card.get("files") or []:
        if f.get("kind") == "ratings":
            market, category = str(f["path"]).split("/")[:2]
            out[f"{market}/{category}"] = f
    return out


def describe(ds: Dataset, card: dict | None = None) -> dict[str, str]:
    """``{"kind": "paper" | "twin" | "other", "what": one line for report headers}``."""
    meta = ds.meta
    if ds.synthetic:
        if meta.get("simulated"):
            return {"kind": TWIN, "what": f"the SYNTHETIC XMarket twin ({ds.name}, {meta.get('sim_scale')} preset, "
                    f"seed {meta.get('sim_seed')}): generated to XMarket's published statistics as a stand-in; "
                    "its numbers say nothing about XMarket itself"}
        return {"kind": OTHER, "what": f"{ds.name}: SYNTHETIC toy data, not the paper's XMarket"}
    if meta.get("loader") != XMARKET_LOADER:
        return {"kind": OTHER, "what": f"{ds.name} ({meta.get('source', 'loaded data')}), not the paper's XMarket"}
    published = published_files(card)
    domains = list(meta.get("domains") or [])
    labels = list(meta.get("raw_interactions") or {})
    problems = []
    if sorted(domains) != sorted(published):
        problems.append(f"domains {', '.join(domains)} (the paper's: {', '.join(published)})")
    for dom, label in zip(domains, labels, strict=False):
        ref = published.get(dom)
        if ref is None:
            continue
        rows, items = meta["raw_interactions"][label], (meta.get("raw_items") or {}).get(label)
        if rows != ref.get("rows") or items != ref.get("items"):
            problems.append(f"{dom} {rows:,} of {ref.get('rows') or 0:,} ratings rows, "
                            f"{items or 0:,} of {ref.get('items') or 0:,} items")
        elif ref.get("sha256"):
            path = next((Path(f) for f in meta.get("files", []) if Path(f).name == Path(ref["path"]).name), None)
            if path is None or sha256_file(path) != ref["sha256"]:
                problems.append(f"{dom}: the ratings file's sha256 differs from the published one")
    if problems:
        return {"kind": OTHER, "what": "XMarket files, but not the paper's XMarket (datasets/xmarket.yaml): "
                + "; ".join(problems)}
    what = ("the paper's XMarket: US " + ", ".join(d.split("/")[1] for d in domains)
            + ", every domain's ratings rows and items match the published files (datasets/xmarket.yaml)")
    if not meta.get("metadata"):
        what += "; no metadata files, so ID-only (content methods are skipped)"
    return {"kind": PAPER, "what": what}


def with_paper_data(ds: Dataset) -> Dataset:
    """``ds`` with ``meta['paper_data']`` = :func:`describe` (recorded by every run and report)."""
    return replace(ds, meta=dict(ds.meta, paper_data=describe(ds)))
