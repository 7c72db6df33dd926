"""RecBole atomic files (``<name>.inter``, ``<name>.item``) -> :class:`Dataset`.

Any RecBole dataset can then run through the same split, features and evaluator. The header is
``field:type`` tab-separated; the user, item, rating and time fields use RecBole's default names
(``user_id``, ``item_id``, ``rating``, ``timestamp``). MovieLens-100k ships inside RecBole's wheel
(``recbole/dataset_example/ml-100k``), so ``load_recbole('ml-100k')`` works offline; RecBole itself
is never imported, only its files are read.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.numbers import RATING_RANGE, TIMESTAMP_RANGE, check_range
from benchmark.data.xmarket import file_signature
from benchmark.errors import DataError

log = logging.getLogger(__name__)

LOADER_VERSION = "recbole-loader/1"
USER, ITEM, RATING, TIME = "user_id", "item_id", "rating", "timestamp"
TITLE_FIELDS = ("movie_title", "title", "item_name", "name")
CATEGORY_FIELDS = ("class", "categories", "category", "genre", "genres")
_TYPES = {"token", "token_seq", "float", "float_seq"}


def bundled_dir() -> Path | None:
    """``recbole/dataset_example`` inside the installed RecBole wheel, if RecBole is installed."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example"
    return path if path.is_dir() else None


def resolve(spec: str, data_dir: Path | None = None) -> tuple[str, Path]:
    """(dataset name, directory holding ``<name>.inter``) for a name or a directory path."""
    p = Path(spec)
    if p.is_dir():
        inter = sorted(p.glob("*.inter"))
        if (p / f"{p.name}.inter").is_file():
            return p.name, p
        if len(inter) == 1:
            return inter[0].stem, p
        raise DataError(f"expected exactly one <name>.inter file, found {len(inter)}", p)
    name = spec
    tried = []
    roots = [Path(data_dir), Path(data_dir) / "recbole"] if data_dir is not None else []
    if (b := bundled_dir()) is not None:
        roots.append(b)
    for root in roots:
        cand = root / name
        tried.append(str(cand))
        if (cand / f"{name}.inter").is_file():
            return name, cand
    raise DataError(f"RecBole dataset {name!r} not found (looked in: {', '.join(tried) or 'nowhere'})")


def _read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a tab-separated atomic file as strings; returns (frame with bare field names, types)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise DataError(f"cannot read ({exc})", path) from None
    if not header:
        raise DataError("file is empty", path)
    names, types = [], {}
    for col in header.split("\t"):
        field, sep, typ = col.partition(":")
        if not sep or typ not in _TYPES:
            raise DataError(
                f"bad header column {col!r} (expected field:type, type in {sorted(_TYPES)})", path, 1
            )
        names.append(field)
        types[field] = typ
    try:
        df = pd.read_csv(
            path, sep="\t", header=None, skiprows=1, dtype=str, keep_default_na=False,
            quoting=csv.QUOTE_NONE, encoding="utf-8", encoding_errors="replace", engine="c",
        )  # fmt: skip
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        detail = str(exc).split("C error: ")[-1].strip()
        raise DataError(f"malformed line: {detail}", path, int(m.group(1)) if m else None) from None
    except pd.errors.EmptyDataError:
        df = pd.DataFrame({i: pd.Series(dtype=object) for i in range(len(names))})
    if df.shape[1] != len(names):
        extra = df.iloc[:, len(names) :].to_numpy(dtype=object) != "" if df.shape[1] > len(names) else None
        line = int(np.flatnonzero(extra.any(axis=1))[0]) + 2 if extra is not None and extra.any() else 2
        raise DataError(f"{df.shape[1]} columns, the header has {len(names)}", path, line)
    df.columns = names
    return df, types


def _to_float(path: Path, values: np.ndarray, field: str, value_range: tuple[float, float]) -> np.ndarray:
    """A numeric column: '' = missing (nan); anything else must parse, be finite and lie in ``value_range``."""
    out = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    missing = values == ""
    bad = np.isnan(out) & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"unparseable {field} {values[i]!r}", path, i + 2)
    check_range(out, field, path, value_range, first_line=2, raw=values, missing=missing)
    return out


def load_recbole(
    spec: str, data_dir: Path | None = None, domain_field: str | None = None, progress: bool = True
) -> Dataset:
    """Load a RecBole dataset; ``domain_field`` (an ``.item`` field) gives each item's domain
    (its first token), else all items share one domain named after the dataset.

    Items are the ``.item`` rows that occur in ``.inter`` (file order), then ``.inter``-only
    items in order of first appearance. ``day = timestamp // 86400``; ``line`` = file order.
    """
    name, root = resolve(spec, data_dir)
    inter_path, item_path = root / f"{name}.inter", root / f"{name}.item"
    with tqdm(total=2, desc=f"load recbole:{name}", unit="file", disable=not progress) as bar:
        inter, _ = _read_atomic(inter_path)
        bar.update()
        item_df = _read_atomic(item_path)[0] if item_path.is_file() else None
        bar.update()
    for need in (USER, ITEM):
        if need not in inter.columns:
            raise DataError(
                f"no {need!r} field in the header (fields: {', '.join(inter.columns)})", inter_path, 1
            )
    if not len(inter):
        raise DataError("no interactions", inter_path)
    for col, what in ((USER, "user id"), (ITEM, "item id")):
        empty = inter[col].to_numpy(dtype=object) == ""
        if empty.any():
            raise DataError(f"missing {what}", inter_path, int(np.flatnonzero(empty)[0]) + 2)

    raw_items = inter[ITEM].to_numpy(dtype=object)
    item_codes_inter, inter_uniq = pd.factorize(raw_items)
    meta: dict = {"loader": LOADER_VERSION, "source": str(root), "files": [str(inter_path)]}
    if item_df is not None:
        if ITEM not in item_df.columns:
            raise DataError(f"no {ITEM!r} field in the header", item_path, 1)
        item_df = item_df.drop_duplicates(ITEM, keep="first")
        listed = item_df[ITEM].to_numpy(dtype=object)
        used = pd.Index(inter_uniq)
        in_inter = used.get_indexer(listed) >= 0
        extras = inter_uniq[pd.Index(listed).get_indexer(inter_uniq) < 0]
        source_id = np.concatenate([listed[in_inter], extras]).astype(object)
        item_df = item_df[in_inter].set_index(ITEM).reindex(source_id, fill_value="")
        meta.update(
            files=[str(inter_path), str(item_path)], items_without_interactions=int((~in_inter).sum())
        )
        meta["items_without_item_row"] = len(extras)
    else:
        source_id = np.asarray(inter_uniq, dtype=object)
    item_index = pd.Index(source_id).get_indexer(inter_uniq)
    item = item_index[item_codes_inter].astype(np.int32)

    domains: tuple[str, ...] = (name,)
    item_domain = np.zeros(len(source_id), dtype=np.int16)
    if domain_field is not None:
        if item_df is None or domain_field not in item_df.columns:
            raise DataError(f"domain field {domain_field!r} is not an .item field", item_path)
        first = (
            item_df[domain_field]
            .str.split(n=1)
            .str[0]
            .fillna("")
            .replace("", "unknown")
            .to_numpy(dtype=object)
        )
        codes, uniq = pd.factorize(first, sort=True)
        domains, item_domain = tuple(str(u) for u in uniq), codes.astype(np.int16)
    items = _items(item_df, source_id, domains, item_domain)

    user_codes, user_uniq = pd.factorize(inter[USER].to_numpy(dtype=object))
    rating = (
        _to_float(inter_path, inter[RATING].to_numpy(dtype=object), RATING, RATING_RANGE).astype(np.float32)
        if RATING in inter.columns
        else np.full(len(inter), np.nan, dtype=np.float32)
    )
    if TIME in inter.columns:
        ts = _to_float(inter_path, inter[TIME].to_numpy(dtype=object), TIME, TIMESTAMP_RANGE)
        day = np.floor_divide(np.nan_to_num(ts, nan=0.0), 86400).astype(np.int32)
    else:
        from benchmark.data.domains import declare_undated

        day = np.zeros(len(inter), dtype=np.int32)
        declare_undated(meta, inter_path)
    interactions = Interactions(
        user=user_codes.astype(np.int32),
        item=item,
        day=day,
        rating=rating,
        line=np.arange(len(inter), dtype=np.int64),
        user_ids=np.asarray(user_uniq, dtype=object),
    )
    h = hashlib.sha256(json.dumps([LOADER_VERSION, name, domain_field]).encode())
    for f in meta["files"]:
        h.update(f"{Path(f).name}={file_signature(Path(f))};".encode())
    meta.update(n_items=len(items), n_users=interactions.n_users, n_interactions=len(interactions))
    return Dataset(
        name=f"recbole:{name}",
        items=items,
        interactions=interactions,
        synthetic=False,
        fingerprint=h.hexdigest(),
        meta=meta,
    )


def _obj(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


def _items(item_df: pd.DataFrame | None, source_id, domains, item_domain) -> Items:
    """Title and categories from the .item file where it has such fields; ID-only otherwise."""
    source_id = _obj(source_id)
    title_field = next((f for f in TITLE_FIELDS if item_df is not None and f in item_df.columns), None)
    if item_df is None or title_field is None:
        return Items(domains=domains, source_id=source_id, domain=item_domain)
    n = len(source_id)
    cat_field = next((f for f in CATEGORY_FIELDS if f in item_df.columns), None)
    cats = _obj([tuple(s.split()) for s in item_df[cat_field].tolist()]) if cat_field else _obj([()] * n)
    return Items(
        domains=domains,
        source_id=source_id,
        domain=item_domain,
        title=_obj(item_df[title_field].str.strip().tolist()),
        categories=cats,
        description=_obj([""] * n),
        features=_obj([""] * n),
    )
