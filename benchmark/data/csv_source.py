"""A plain CSV/TSV of interactions (+ an optional item file) -> :class:`Dataset`.

Described by a small dataset card (``format: csv``; see ``datasets/csv-tiny.yaml``) that maps the
file's columns to roles, or given directly as ``csv:<path>`` with conventional column names
(``user``/``user_id``/``userId``, ``item``/``item_id``/``itemId``, ``rating``/``rate``,
``timestamp``/``time``/``date``). Without a time column the data is declared undated: each
user's interactions keep their file order (``Dataset.meta['undated']``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.cards import find_card, shared_item_ids
from benchmark.data.domains import declare_undated, key_per_domain, parse_list, restrict
from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.numbers import RATING_RANGE, TIMESTAMP_RANGE, check_range
from benchmark.data.xmarket import file_signature
from benchmark.errors import ConfigError, DataError

LOADER_VERSION = "csv-loader/1"
GUESS = {
    "user": ("user", "user_id", "userId", "userid"),
    "item": ("item", "item_id", "itemId", "itemid", "asin"),
    "rating": ("rating", "rate", "score"),
    "time": ("timestamp", "time", "date", "datetime"),
}


def _sep(path: Path, sep: str | None) -> str:
    if sep:
        return "\t" if sep in ("\\t", "tab") else sep
    return "," if path.suffix.lower() == ".csv" else "\t"


def _read(path: Path, sep: str | None) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        return pd.read_csv(path, sep=_sep(path, sep), dtype=str, keep_default_na=False,
                           quoting=csv.QUOTE_MINIMAL, encoding="utf-8", encoding_errors="replace")
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed line: {str(exc).splitlines()[-1]}", path) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", path, 1) from None


def _column(df: pd.DataFrame, path: Path, role: str, mapped: str | None, required: bool) -> str | None:
    if mapped is not None:
        if mapped not in df.columns:
            raise DataError(f"mapped column {mapped!r} ({role}) is missing; the header has: "
                            f"{', '.join(df.columns)}", path, 1)
        return mapped
    found = next((c for c in GUESS.get(role, ()) if c in df.columns), None)
    if found is None and required:
        raise DataError(f"no {role} column (expected one of {', '.join(GUESS[role])}; the header has: "
                        f"{', '.join(df.columns)})", path, 1)
    return found


def _ratings(path: Path, values: np.ndarray) -> np.ndarray:
    """The rating column: '' = no rating (nan); anything else must be a finite number in RATING_RANGE."""
    missing = np.array([str(v).strip() == "" for v in values], dtype=bool)
    num = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    unparsed = np.isnan(num) & ~missing
    if unparsed.any():
        i = int(np.flatnonzero(unparsed)[0])
        raise DataError(f"unparseable rating {values[i]!r}", path, i + 2)
    check_range(num, "rating", path, RATING_RANGE, first_line=2, raw=values, missing=missing)
    return num.astype(np.float32)


def _days(path: Path, values: np.ndarray) -> np.ndarray:
    num = pd.to_numeric(pd.Series(values), errors="coerce")
    if not num.isna().any():
        seconds = num.to_numpy(dtype=np.float64)
        check_range(seconds, "time", path, TIMESTAMP_RANGE, first_line=2, raw=values)
        return np.floor_divide(seconds, 86400).astype(np.int32)
    dates = pd.to_datetime(pd.Series(values), errors="coerce", format="mixed")
    bad = dates.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"unparseable time {values[i]!r} (expected seconds since 1970 or a date)", path, i + 2)
    return (dates.to_numpy(dtype="datetime64[D]").astype(np.int64)).astype(np.int32)


def card_spec(card: dict) -> dict:
    """Validate a ``format: csv`` card into loader arguments (paths relative to the card)."""
    base = Path(card["_path"]).parent
    if not isinstance(card.get("file"), str):
        raise ConfigError(f"{card['_path']}: a csv dataset card needs 'file' (the interactions file)")
    cols = card.get("columns") or {}
    if not isinstance(cols, dict):
        raise ConfigError(f"{card['_path']}: 'columns' must map roles (user, item, rating, time) to column names")
    return {"name": card["name"], "file": base / card["file"],
            "item_file": base / card["item_file"] if card.get("item_file") else None,
            "sep": card.get("sep"), "columns": cols, "card": card["_path"]}


def load_csv(file: Path, name: str | None = None, columns: dict | None = None, item_file: Path | None = None,
             sep: str | None = None, domain_field: str | None = None, domains: str | None = None,
             time_field: str | None = None, card: str | None = None) -> Dataset:
    """Load interactions from ``file``; ``domain_field`` names the column (of ``item_file`` when
    given, else of ``file``) whose value is each item's domain; ``domains`` keeps only those."""
    file = Path(file)
    cols = dict(columns or {})
    if time_field is not None:
        cols["time"] = time_field
    df = _read(file, sep)
    user = _column(df, file, "user", cols.get("user"), True)
    item = _column(df, file, "item", cols.get("item"), True)
    rating = _column(df, file, "rating", cols.get("rating"), False)
    time = _column(df, file, "time", cols.get("time"), False)
    if not len(df):
        raise DataError("no interactions", file)
    for col in (user, item):
        empty = df[col].to_numpy(dtype=object) == ""
        if empty.any():
            raise DataError(f"empty {col!r}", file, int(np.flatnonzero(empty)[0]) + 2)

    item_codes, item_uniq = pd.factorize(df[item].to_numpy(dtype=object))
    source_id = np.asarray(item_uniq, dtype=object)
    meta_keys: dict = {}
    title = None
    dom_values = None
    files = [file]
    if item_file is not None:
        idf = _read(Path(item_file), sep).drop_duplicates()
        files.append(Path(item_file))
        key = _column(idf, Path(item_file), "item", cols.get("item"), True)
        idf = idf.drop_duplicates(key, keep="first").set_index(key).reindex(source_id, fill_value="")
        if cols.get("title"):
            title = idf[_column(idf.reset_index(), Path(item_file), "title", cols["title"], True)].to_numpy(dtype=object)
        if domain_field is not None:
            if domain_field not in idf.columns:
                raise DataError(f"domain field {domain_field!r} is not a column of the item file (columns: "
                                f"{', '.join(idf.columns)})", item_file, 1)
            dom_values = idf[domain_field].to_numpy(dtype=object)
        dom_path = Path(item_file)
    else:
        dom_path = file
        if domain_field is not None:
            if domain_field not in df.columns:
                raise DataError(f"domain field {domain_field!r} is not a column (columns: {', '.join(df.columns)})",
                                file, 1)
            item_codes, source_id, dom_values = _items_by_row_domain(df, item, domain_field, card, meta_keys, file)
    if dom_values is not None:
        dom_values = np.array([str(v).strip() or "unknown" for v in dom_values], dtype=object)
        codes, uniq = pd.factorize(dom_values, sort=True)
        dom_names, item_domain = tuple(str(u) for u in uniq), codes.astype(np.int16)
    else:
        dom_names, item_domain = (name or file.stem,), np.zeros(len(source_id), dtype=np.int16)

    meta: dict = {"loader": LOADER_VERSION, "source": str(file), "files": [str(f) for f in files], **meta_keys}
    if card:
        meta["card"] = card
    if time is not None:
        day = _days(file, df[time].to_numpy(dtype=object))
    else:
        day = np.zeros(len(df), dtype=np.int32)
        declare_undated(meta, file)
    rate = _ratings(file, df[rating].to_numpy(dtype=object)) if rating is not None else np.full(
        len(df), np.nan, dtype=np.float32)
    user_codes, user_uniq = pd.factorize(df[user].to_numpy(dtype=object))
    inter = Interactions(user=user_codes.astype(np.int32), item=item_codes.astype(np.int32), day=day, rating=rate,
                         line=np.arange(len(df), dtype=np.int64), user_ids=np.asarray(user_uniq, dtype=object))
    n = len(source_id)
    text = {}
    if title is not None:
        empty = np.empty(n, dtype=object)
        empty[:] = ""
        cats = np.empty(n, dtype=object)
        cats[:] = [()] * n
        text = {"title": title, "categories": cats, "description": empty, "features": empty.copy()}
    items = Items(domains=dom_names, source_id=source_id, domain=item_domain, **text)
    # items change only when an id spans domains; elsewhere the fingerprint (and run keys) stay as they were
    keyed = ["items keyed per domain"] if meta_keys.get("ids_in_several_domains") else []
    h = hashlib.sha256(json.dumps([LOADER_VERSION, name, cols, domain_field, str(sep), *keyed], sort_keys=True).encode())
    for f in files:
        h.update(f"{f.name}={file_signature(f)};".encode())
    ds = Dataset(name=name or file.stem, items=items, interactions=inter, synthetic=False,
                 fingerprint=h.hexdigest(), meta=meta)
    ds = restrict(ds, parse_list(domains), dom_path)
    return replace_counts(ds)


def _items_by_row_domain(df: pd.DataFrame, item: str, domain_field: str, card: str | None, meta: dict,
                         path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items keyed by (domain, id) when the domain is a column of the interactions (e.g. a market).

    An id in two markets is then two items: keyed by id alone, each item took its first row's
    market and users of one market reached into the others through shared ids. Whether ids are
    shared across domains is the card's ``shared_item_ids`` (no card: not shared, so an id that
    spans domains is warned about). Returns (item code per row, source id per item, domain name per item).
    """
    doms = np.array([str(v).strip() or "unknown" for v in df[domain_field].to_numpy(dtype=object)], dtype=object)
    dom_codes, dom_uniq = pd.factorize(doms)
    shared = shared_item_ids(find_card(card)) if card else False
    codes, source_id, item_dom = key_per_domain(df[item].to_numpy(dtype=object), dom_codes, shared, meta, path)
    return codes, source_id, np.asarray(dom_uniq, dtype=object)[item_dom]


def replace_counts(ds: Dataset) -> Dataset:
    ds.meta.update(n_items=len(ds.items), n_users=ds.interactions.n_users, n_interactions=len(ds.interactions))
    return ds
