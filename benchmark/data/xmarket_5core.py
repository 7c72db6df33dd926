"""XMarket's derived cross-market 5-core files (FOREC releases) -> :class:`Dataset`.

Each file has a header line ``userId itemId rate date`` (whitespace-separated), float ratings
(``4.0``) and one market per file: ``<dir>/<market>_5core.txt`` (domains = markets) or
``<dir>/<market>/<Category>/<market>_5core.txt`` (domains = ``market/Category``). Copies without
the date column (header ``userId itemId rate``) are undated: each user's rows keep their file
order, the load says so once and the split manifest and every report header record it. Item ids
are ASINs, one product in several markets (card ``datasets/xmarket-5core.yaml``), so items are
keyed by (domain, ASIN). Which loader reads a directory is decided in ``layouts.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.cards import shared_item_ids
from benchmark.data.domains import declare_undated, key_per_domain, parse_list
from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.numbers import XMARKET_RATING_RANGE, check_range
from benchmark.data.xmarket import file_signature
from benchmark.errors import DataError

LOADER_VERSION = "xmarket-5core/1"
NAME = "xmarket-5core"
HEADER = ["userId", "itemId", "rate", "date"]


def find_5core(root: Path) -> dict[str, Path]:
    """Domain label -> file, for every ``*_5core.txt`` directly under ``root`` or two levels down."""
    out = {p.name[: -len("_5core.txt")]: p for p in sorted(root.glob("*_5core.txt"))}
    for p in sorted(root.glob("*/*/*_5core.txt")):
        out[f"{p.parent.parent.name}/{p.parent.name}"] = p
    return out


def _read(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise DataError(f"cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", path) from None
    if list(df.columns) not in (HEADER, HEADER[:3]):
        raise DataError(f"expected the header '{' '.join(HEADER)}' (or without date), found {' '.join(df.columns)!r}",
                        path, 1)
    return df


def load_5core(root: Path, domains: str | None = None) -> Dataset:
    """Read the 5-core files under ``root``; ``domains`` keeps only those labels (markets or market/Category)."""
    found = find_5core(root)
    wanted = parse_list(domains) or list(found)
    frames, dated = [], {}
    for label in wanted:
        if label not in found:
            raise DataError(f"no 5-core file for domain {label!r} (found: {', '.join(found) or 'none'})", root)
        df = _read(found[label])
        if not len(df):
            raise DataError(f"domain {label!r} is empty", found[label])
        rate = pd.to_numeric(df["rate"], errors="coerce")
        if rate.isna().any():
            i = int(np.flatnonzero(rate.isna().to_numpy())[0])
            raise DataError(f"unparseable rating {df['rate'].iloc[i]!r}", found[label], i + 2)
        check_range(rate.to_numpy(dtype=np.float64), "rating", found[label], XMARKET_RATING_RANGE, first_line=2,
                    raw=df["rate"].to_numpy(dtype=object))
        dates = pd.to_datetime(df["date"], errors="coerce", format="%Y-%m-%d") if "date" in df else None
        if dates is not None and dates.isna().any():
            i = int(np.flatnonzero(dates.isna().to_numpy())[0])
            raise DataError(f"unparseable date {df['date'].iloc[i]!r}", found[label], i + 2)
        frames.append(pd.DataFrame({
            "user": df["userId"].to_numpy(dtype=object), "item": df["itemId"].to_numpy(dtype=object),
            "rating": rate.to_numpy(dtype=np.float32),
            "day": dates.to_numpy(dtype="datetime64[D]").astype(np.int64) if dates is not None else 0,
            "dom": wanted.index(label),
        }))
        dated[label] = dates is not None
    if len(set(dated.values())) > 1:  # some days real, some 0 would order rows by nonsense
        undated = next(lab for lab, d in dated.items() if not d)
        raise DataError(f"no date column, while {', '.join(lab for lab, d in dated.items() if d)} have one; "
                        "all 5-core files of a folder must agree", found[undated], 1)
    all_ = pd.concat(frames, ignore_index=True)
    meta: dict = {"loader": LOADER_VERSION, "source": str(root), "files": [str(found[d]) for d in wanted]}
    item_codes, source_id, item_domain = key_per_domain(  # an item of two markets is two items
        all_["item"].to_numpy(dtype=object), all_["dom"].to_numpy(), shared_item_ids(NAME, default=True), meta, root)
    items = Items(domains=tuple(wanted), source_id=source_id, domain=item_domain)
    user_codes, user_uniq = pd.factorize(all_["user"].to_numpy(dtype=object))
    inter = Interactions(user=user_codes.astype(np.int32), item=item_codes,
                         day=all_["day"].to_numpy().astype(np.int32), rating=all_["rating"].to_numpy(np.float32),
                         line=np.arange(len(all_), dtype=np.int64), user_ids=np.asarray(user_uniq, dtype=object))
    undated = not all(dated.values())
    h = hashlib.sha256(json.dumps([LOADER_VERSION, wanted] + (["undated"] if undated else [])).encode())
    for label in wanted:
        h.update(f"{label}={file_signature(found[label])};".encode())
    if undated:
        declare_undated(meta, root)
    meta.update(n_items=len(items), n_users=inter.n_users, n_interactions=len(inter))
    return Dataset(name=NAME, items=items, interactions=inter, synthetic=False,
                   fingerprint=h.hexdigest(), meta=meta)
