"""The WSDM Cup 2022 cross-market files (XMRec) -> :class:`Dataset`, one market per domain.

The competition released three source markets ``s1``-``s3`` and two target markets ``t1``, ``t2``
(card: ``datasets/wsdm-cup-2022.yaml``). Every interaction file is tab-separated with the header
``userId itemId rating`` and has no time column, so the data is undated (file order). Read as
published, in either of two layouts:

- one file per market in one folder: ``<m>.tsv`` and/or ``<m>_5core.tsv`` (``s1_5core.tsv``, ``s2.tsv``, ...);
- the starter kit's ``DATA/<m>/``: ``train.tsv``, ``train_5core.tsv``, ``valid_qrel.tsv`` (the held-out
  validation positive of each user, rating = relevance 1), and the candidate lists ``valid_run.tsv`` /
  ``test_run.tsv`` (no header: ``userId`` TAB comma-separated item ids; candidates, not interactions:
  counted, not loaded).

Within a market, rows are read in the order train, 5-core, validation qrels, and a (user, item)
pair already read is dropped (the 5-core file repeats part of the training file). User ids carry
their market (``t1U1006129``); item ids are shared across markets (``P1016853`` is one product in
several markets), so items are keyed by (market, id) (``domains.key_per_domain``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.cards import shared_item_ids
from benchmark.data.domains import declare_undated, key_per_domain, parse_list
from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.xmarket import file_signature
from benchmark.errors import DataError

LOADER_VERSION = "wsdm-cup-2022/1"
NAME = "wsdm-cup-2022"
HEADER = ["userId", "itemId", "rating"]
MARKET = re.compile(r"^[st]\d+$")
_FLAT = re.compile(r"^([st]\d+)(_5core)?\.tsv$")
#: role -> file name inside ``<m>/`` (the starter kit's layout), in reading order
NESTED = {"train": "train.tsv", "train_5core": "train_5core.tsv", "valid_qrel": "valid_qrel.tsv"}
CANDIDATES = ("valid_run.tsv", "test_run.tsv")


def find_markets(root: Path) -> dict[str, list[tuple[str, Path]]]:
    """Market -> its interaction files ``[(role, path)]`` in reading order ({} when none)."""
    root = Path(root)
    found: dict[str, list[tuple[str, Path]]] = {}
    if not root.is_dir():
        return found
    for p in sorted(root.glob("*.tsv")):
        m = _FLAT.match(p.name)
        if m:
            found.setdefault(m.group(1), []).append(("train_5core" if m.group(2) else "train", p))
    for d in sorted(p for p in root.iterdir() if p.is_dir() and MARKET.match(p.name)):
        for role, fname in NESTED.items():
            if (d / fname).is_file():
                found.setdefault(d.name, []).append((role, d / fname))
    order = {role: k for k, role in enumerate(NESTED)}
    return {m: sorted(files, key=lambda rf: order[rf[0]]) for m, files in sorted(found.items())}


def _read(path: Path) -> pd.DataFrame:
    """One interaction file; a wrong header, a malformed line, an empty id or rating is a DataError."""
    try:  # header=None: a line with more fields than the header is an error, not a shifted index column
        raw = pd.read_csv(path, sep="\t", dtype=str, header=None, keep_default_na=False, quoting=3, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", path, 1) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise DataError(f"malformed line ({str(exc).splitlines()[-1].strip()})", path,
                        int(m.group(1)) if m else None) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path) from None
    if list(raw.iloc[0]) != HEADER:
        raise DataError(f"expected the tab-separated header '{' '.join(HEADER)}', found {' '.join(raw.iloc[0])!r}",
                        path, 1)
    df = raw.iloc[1:].set_axis(HEADER, axis=1).reset_index(drop=True)
    if not len(df):
        raise DataError("no interactions after the header", path, 2)
    for col in HEADER:
        empty = df[col].to_numpy(dtype=object) == ""
        if empty.any():
            raise DataError(f"empty {col}", path, int(np.flatnonzero(empty)[0]) + 2)
    rate = pd.to_numeric(df["rating"], errors="coerce")
    if rate.isna().any():
        i = int(np.flatnonzero(rate.isna().to_numpy())[0])
        raise DataError(f"unparseable rating {df['rating'].iloc[i]!r}", path, i + 2)
    df["rating"] = rate.astype(np.float32)
    return df


def _candidate_users(path: Path) -> int:
    """Users in a candidate list (``valid_run.tsv`` / ``test_run.tsv``: one line per user)."""
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def load_wsdm(root: Path, domains: str | list | None = None) -> Dataset:
    """Read the markets under ``root``; ``domains`` keeps only those markets (e.g. ``"t1,t2"``)."""
    root = Path(root)
    found = find_markets(root)
    if not found:
        raise DataError("no WSDM Cup 2022 files (s1_5core.tsv, t1.tsv, ... or t1/train.tsv)", root)
    wanted = parse_list(domains) or list(found)
    missing = [m for m in wanted if m not in found]
    if missing:
        raise DataError(f"no WSDM Cup 2022 file for market(s) {', '.join(missing)} (found: {', '.join(found)})", root)
    frames, rows, files = [], {}, []
    dropped = 0
    for d, market in enumerate(wanted):
        parts = []
        for role, path in found[market]:
            df = _read(path)
            rows[str(path.relative_to(root))] = len(df)
            files.append(path)
            rating = df["rating"].to_numpy(np.float32) if role != "valid_qrel" else np.full(len(df), np.nan, np.float32)
            parts.append(pd.DataFrame({"user": df["userId"].to_numpy(dtype=object),
                                       "item": df["itemId"].to_numpy(dtype=object), "rating": rating, "dom": d}))
        market_rows = pd.concat(parts, ignore_index=True)
        dup = market_rows.duplicated(["user", "item"], keep="first").to_numpy()
        dropped += int(dup.sum())
        frames.append(market_rows[~dup])
    all_ = pd.concat(frames, ignore_index=True)
    meta: dict = {"loader": LOADER_VERSION, "source": str(root), "files": [str(f) for f in files],
                  "rows": rows, "duplicate_pairs_dropped": dropped, "markets": list(wanted)}
    cand = {str(p.relative_to(root)): _candidate_users(p) for m in wanted for name in CANDIDATES
            if (p := root / m / name).is_file()}
    if cand:
        meta["candidate_lists_not_loaded"] = cand
    item_codes, source_id, item_domain = key_per_domain(
        all_["item"].to_numpy(dtype=object), all_["dom"].to_numpy(), shared_item_ids(NAME, default=True), meta, root)
    user_codes, user_uniq = pd.factorize(all_["user"].to_numpy(dtype=object))
    markets_per_user = pd.Series(all_["dom"].to_numpy()).groupby(user_codes).nunique().to_numpy()
    meta["users_in_several_markets"] = int(np.count_nonzero(markets_per_user > 1))
    declare_undated(meta, root)
    inter = Interactions(user=user_codes.astype(np.int32), item=item_codes, day=np.zeros(len(all_), dtype=np.int32),
                         rating=all_["rating"].to_numpy(np.float32), line=np.arange(len(all_), dtype=np.int64),
                         user_ids=np.asarray(user_uniq, dtype=object))
    items = Items(domains=tuple(wanted), source_id=source_id, domain=item_domain)
    h = hashlib.sha256(json.dumps([LOADER_VERSION, wanted]).encode())
    for f in files:
        h.update(f"{f.relative_to(root)}={file_signature(f)};".encode())
    meta.update(n_items=len(items), n_users=inter.n_users, n_interactions=len(inter))
    return Dataset(name=NAME, items=items, interactions=inter, synthetic=False, fingerprint=h.hexdigest(), meta=meta)
