"""Keep only some domains of a loaded dataset (``--domains`` on sources whose domain is an item field)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

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
    fp = hashlib.sha256(f"{ds.fingerprint}|domains={','.join(wanted)}".encode()).hexdigest()
    meta = dict(ds.meta, domains_kept=list(wanted), n_items=len(new_items), n_users=new_inter.n_users,
                n_interactions=len(new_inter))
    return replace(ds, items=new_items, interactions=new_inter, fingerprint=fp, meta=meta)


def declare_undated(meta: dict, path: Path | str) -> None:
    """Record (and say, once) that the data has no dates and file order replaces them."""
    meta["undated"] = UNDATED_RULE
    log.warning("%s: no dates; each user's interactions are ordered by %s", path, UNDATED_RULE)


def key_per_domain(item_ids: np.ndarray, dom_codes: np.ndarray, shared_ids: bool, meta: dict,
                   path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items keyed by (domain, id): ``(item code per row, source id per item, domain per item)``.

    The same id in two markets is two items, so a market's users never reach into another market
    through a shared product id (docs/protocol.md 1.4 step 1 for XMarket's ASINs). ``shared_ids``
    is what the dataset card says: True when one id names one product in every domain (XMarket,
    the 5-core files, the WSDM Cup files), so ids spanning domains are expected and counted; False
    when ids are per domain, so an id spanning domains is suspicious and warned about once.
    """
    id_codes, id_uniq = pd.factorize(np.asarray(item_ids, dtype=object))
    n_ids = max(len(id_uniq), 1)
    pair = np.asarray(dom_codes, dtype=np.int64) * n_ids + id_codes
    item_codes, pairs = pd.factorize(pair)  # first-appearance order, like pd.factorize of the ids
    pairs = np.asarray(pairs, dtype=np.int64)
    source_id = np.empty(len(pairs), dtype=object)
    source_id[:] = list(np.asarray(id_uniq, dtype=object)[pairs % n_ids])
    item_domain = (pairs // n_ids).astype(np.int16)
    spans = np.bincount(pairs % n_ids, minlength=n_ids) > 1
    n_span = int(np.count_nonzero(spans))
    meta.update(shared_item_ids=bool(shared_ids), ids_in_several_domains=n_span)
    if n_span and shared_ids:
        log.info("%s: %d item id(s) occur in several domains (one product, several markets); each (domain, id) "
                 "is its own item", path, n_span)
    elif n_span:
        example = id_uniq[int(np.flatnonzero(spans)[0])]
        log.warning("%s: %d item id(s) occur in several domains (e.g. %r); each (domain, id) is its own item. If an "
                    "id names one product across domains, say `shared_item_ids: true` in the dataset card",
                    path, n_span, example)
    return item_codes.astype(np.int32), source_id, item_domain
