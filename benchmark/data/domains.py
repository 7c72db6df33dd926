"""Keep only some domains of a loaded dataset (``--domains`` on sources whose domain is an item field)."""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from benchmark.data.model import Dataset, Interactions, Items
from benchmark.errors import DataError

log = logging.getLogger(__name__)

UNDATED_RULE = "file order"


def parse_list(spec: str | list | None) -> list[str] | None:
    if spec is None:
        return None
    parts = spec if isinstance(spec, list) else str(spec).split(",")
    return [p.strip() for p in parts if str(p).strip()] or None


def restrict(ds: Dataset, wanted: list[str] | None, path: Path | str) -> Dataset:
    """Drop the items (and their interactions) outside ``wanted``; a wanted domain that is empty
    after filtering is a :class:`DataError` naming ``path`` (the file the domain field came from)."""
    if not wanted:
        return ds
    items, inter = ds.items, ds.interactions
    index = {d: i for i, d in enumerate(items.domains)}
    counts = np.bincount(items.domain[inter.item], minlength=len(items.domains)) if len(inter) else None
    for d in wanted:
        if d not in index or counts is None or counts[index[d]] == 0:
            raise DataError(f"domain {d!r} is empty after filtering (domains here: {', '.join(items.domains)})", path)
    keep_dom = np.array([index[d] for d in wanted])
    keep_item = np.isin(items.domain, keep_dom)
    new_index = np.full(len(items), -1, dtype=np.int64)
    new_index[keep_item] = np.arange(int(keep_item.sum()))
    remap = np.full(len(items.domains), -1, dtype=np.int64)
    remap[keep_dom] = np.arange(len(keep_dom))
    kw = {}
    for f in fields(Items):
        v = getattr(items, f.name)
        if isinstance(v, np.ndarray) and len(v) == len(items):
            kw[f.name] = v[keep_item]
    kw["domain"] = remap[items.domain[keep_item]].astype(np.int16)
    kw["domains"] = tuple(wanted)
    new_items = replace(items, **kw)
    rows = keep_item[inter.item]
    users, user_codes = np.unique(inter.user[rows], return_inverse=True)
    new_inter = Interactions(
        user=user_codes.astype(np.int32), item=new_index[inter.item[rows]].astype(np.int32),
        day=inter.day[rows], rating=inter.rating[rows], line=inter.line[rows], user_ids=inter.user_ids[users],
    )
    import hashlib

    fp = hashlib.sha256(f"{ds.fingerprint}|domains={','.join(wanted)}".encode()).hexdigest()
    meta = dict(ds.meta, domains_kept=list(wanted), n_items=len(new_items), n_users=new_inter.n_users,
                n_interactions=len(new_inter))
    return replace(ds, items=new_items, interactions=new_inter, fingerprint=fp, meta=meta)


def declare_undated(meta: dict, path: Path | str) -> None:
    """Record (and say, once) that the data has no dates and file order replaces them."""
    meta["undated"] = UNDATED_RULE
    log.warning("%s: no dates; each user's interactions are ordered by %s", path, UNDATED_RULE)
