"""The XMarket loader: raw FULL files -> :class:`Dataset` (docs/protocol.md 1.3 and 1.4).

Reads ``ratings_<market>_<Category>.txt.gz`` (space-separated ``userId itemId rating date``, no
header) and, when present, ``metadata_<market>_<Category>.json.gz`` (one JSON object or Python
dict literal per line). Files are looked up as ``<data_dir>/<market>/<Category>/<file>`` (the
download layout, docs/protocol.md 1.1) or flat as ``<data_dir>/<file>``.

This module finds the files, fingerprints them, assembles the :class:`Dataset` and keeps the
parse cache. Interactions are parsed column-wise by :mod:`benchmark.data.xmarket_ratings` (pyarrow's
CSV reader, or the pandas C engine in chunks for any file it declines, which reports the offending
line; ids factorised from the raw Arrow buffers), metadata by :mod:`benchmark.data.xmarket_meta`.
The paper-scale data (~15M rows) never becomes per-row Python objects.
Items are keyed by ``(domain, asin)``, so an ASIN listed in two categories is two items
(docs/protocol.md 1.4 step 1).
The synthetic twin writes the same files plus ``SIMULATED.json``, which marks the dataset synthetic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.numbers import XMARKET_RATING_RANGE, first_bad
from benchmark.data.xmarket_meta import read_metadata
from benchmark.data.xmarket_ratings import DomainRatings, factorize_ids, read_ratings
from benchmark.errors import ConfigError, DataError
from benchmark.fsutil import verify_checked, write_checked

log = logging.getLogger(__name__)

LOADER_VERSION = "xmarket-loader/1"

MARKETS: tuple[str, ...] = (
    "ae", "au", "br", "ca", "cn", "de", "es", "fr", "in", "it", "jp", "mx", "nl", "sa", "sg", "tr", "uk", "us",
)  # fmt: skip
CATEGORIES: tuple[str, ...] = (
    "Arts_Crafts_and_Sewing", "Automotive", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Digital_Music", "Electronics", "Grocery_and_Gourmet_Food",
    "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Sports_and_Outdoors", "Toys_and_Games",
)  # fmt: skip
DEFAULT_DOMAINS: tuple[tuple[str, str], ...] = (
    ("us", "Books"),
    ("us", "Electronics"),
    ("us", "Cell_Phones_and_Accessories"),
)
FILE_PATTERNS = {
    "ratings": "ratings_{market}_{category}.txt.gz",
    "reviews": "reviews_{market}_{category}.json.gz",
    "metadata": "metadata_{market}_{category}.json.gz",
}
SIMULATED_MARKER = "SIMULATED.json"

_SIGNATURE_BYTES = 1 << 20


# ---------------------------------------------------------------------------------------- domains


def parse_domains(spec: str) -> tuple[tuple[str, str], ...]:
    """``"us/Books,us/Electronics"`` -> ``(("us", "Books"), ("us", "Electronics"))``.

    A bare category means the US market (the paper's setting). Unknown names raise ConfigError
    listing the valid ones.
    """
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"no domains in {spec!r}; expected e.g. 'us/Books,us/Electronics'")
    out: list[tuple[str, str]] = []
    for part in parts:
        market, _, category = part.rpartition("/")
        out.append((market or "us", category))
    return check_domains(out)


def check_domains(domains: object) -> tuple[tuple[str, str], ...]:
    """Validate a domain list (a spec string or ``(market, category)`` pairs)."""
    if isinstance(domains, str):
        return parse_domains(domains)
    out = tuple((str(m), str(c)) for m, c in domains)  # type: ignore[union-attr]
    if not out:
        raise ConfigError("no XMarket domains given")
    for market, category in out:
        if market not in MARKETS:
            raise ConfigError(f"unknown XMarket market {market!r}; valid: {', '.join(MARKETS)}")
        if category not in CATEGORIES:
            raise ConfigError(f"unknown XMarket category {category!r}; valid: {', '.join(CATEGORIES)}")
    if len(set(out)) != len(out):
        raise ConfigError(f"duplicate XMarket domain in {['/'.join(d) for d in out]}")
    return out


def domain_labels(domains: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Items.domains: category names, or ``market/Category`` when several markets are mixed."""
    if len({m for m, _ in domains}) == 1:
        return tuple(c for _, c in domains)
    return tuple(f"{m}/{c}" for m, c in domains)


def xmarket_file(data_dir: Path, market: str, category: str, kind: str) -> Path:
    """Where a raw file lives: the nested download layout if present, else flat, else nested."""
    name = FILE_PATTERNS[kind].format(market=market, category=category)
    nested = Path(data_dir) / market / category / name
    flat = Path(data_dir) / name
    if not nested.exists() and flat.exists():
        return flat
    return nested


def xmarket_files_present(data_dir: Path, domains=DEFAULT_DOMAINS) -> bool:
    """True when every domain's ratings file exists under ``data_dir``."""
    domains = check_domains(domains)
    return Path(data_dir).is_dir() and all(
        xmarket_file(Path(data_dir), m, c, "ratings").is_file() for m, c in domains
    )


# ------------------------------------------------------------------------------------ fingerprint


def file_signature(path: Path) -> str:
    """``size:sha256(first MiB + last MiB)``: cheap, yet changes with any edit of the head or tail."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_SIGNATURE_BYTES))
        if size > _SIGNATURE_BYTES:
            f.seek(max(_SIGNATURE_BYTES, size - _SIGNATURE_BYTES))
            h.update(f.read(_SIGNATURE_BYTES))
    return f"{size}:{h.hexdigest()}"


def _fingerprint(domains, use_meta: bool, files: list[Path], sim_bytes: bytes | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([LOADER_VERSION, ["/".join(d) for d in domains], use_meta]).encode())
    for f in files:
        h.update(f"{f.name}={file_signature(f)};".encode())
    if sim_bytes is not None:
        h.update(sim_bytes)
    return h.hexdigest()


# -------------------------------------------------------------------------------------- assembling


def _object_array(values) -> np.ndarray:
    """A 1-D object array of ``values`` (element-wise: tuples stay tuples, never a 2-D array)."""
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


def _simulated(data_dir: Path) -> tuple[bytes | None, dict]:
    marker = data_dir / SIMULATED_MARKER
    if not marker.exists():
        return None, {}
    raw = marker.read_bytes()
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError("malformed JSON in the synthetic-twin marker", marker) from None
    return raw, info if isinstance(info, dict) else {"value": info}


def _resolve_image_urls(items: Items, data_dir: Path) -> Items:
    """Relative/absolute paths in imgUrl (the twin may write them) -> file:// URLs."""
    urls = items.image_url
    if urls is None or not len(urls):
        return items
    local = np.array([bool(u) and "://" not in u for u in urls], dtype=bool)
    if not local.any():
        return items
    fixed = urls.copy()
    for i in np.flatnonzero(local):
        p = Path(fixed[i])
        fixed[i] = (p if p.is_absolute() else (data_dir / p)).resolve().as_uri()
    return replace(items, image_url=fixed)


def load_xmarket(
    data_dir: Path,
    domains=DEFAULT_DOMAINS,
    metadata: bool | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    name: str = "xmarket",
) -> Dataset:
    """Load XMarket ratings (+ metadata) for ``domains`` (docs/protocol.md 1.3, 1.4 steps 1-2).

    ``metadata=None`` uses metadata when every domain has its file, else loads ID-only data;
    ``True`` requires it. With metadata, items without a metadata record or with an empty title
    are dropped with their interactions (counted in ``meta``). ``cache_dir`` (None = no cache)
    keeps the parsed columns in one ``.npz`` keyed by the raw files' fingerprint.
    """
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("data directory does not exist", data_dir)
    domains = check_domains(domains)
    labels = domain_labels(domains)
    rpaths = [xmarket_file(data_dir, m, c, "ratings") for m, c in domains]
    missing = [p for p in rpaths if not p.is_file()]
    if missing:
        raise DataError(
            f"missing XMarket ratings file(s): {', '.join(str(p) for p in missing)} "
            "(run the data fetch command or copy the files there)",
            data_dir,
        )
    mpaths = [xmarket_file(data_dir, m, c, "metadata") for m, c in domains]
    have_meta = [p.is_file() for p in mpaths]
    if metadata is True and not all(have_meta):
        absent = [str(p) for p, ok in zip(mpaths, have_meta, strict=True) if not ok]
        raise DataError(f"metadata requested but missing: {', '.join(absent)}", data_dir)
    use_meta = all(have_meta) if metadata is None else bool(metadata)
    if metadata is None and not use_meta:
        log.warning("xmarket: no metadata file for some domains under %s; loading ID-only items", data_dir)
    sim_bytes, sim_info = _simulated(data_dir)
    files = rpaths + (mpaths if use_meta else [])
    fingerprint = _fingerprint(domains, use_meta, files, sim_bytes)

    cache_file = Path(cache_dir) / f"{name}-{fingerprint[:24]}.npz" if cache_dir is not None else None
    dataset = _cache_load(cache_file, name, fingerprint) if cache_file is not None else None
    if dataset is None:
        dataset = _parse(domains, labels, rpaths, mpaths if use_meta else None, progress, name, fingerprint)
        dataset.meta.update(
            synthetic=sim_bytes is not None,
            simulated=sim_info or None,
            sim_scale=sim_info.get("scale"),
            sim_seed=sim_info.get("seed"),
            data_dir=str(data_dir),
        )
        dataset = replace(dataset, synthetic=sim_bytes is not None)
        if cache_file is not None:
            _cache_save(cache_file, dataset)
    items = _resolve_image_urls(dataset.items, data_dir)
    meta = dict(dataset.meta, data_dir=str(data_dir), load_seconds=round(time.perf_counter() - t0, 3))
    return replace(dataset, items=items, meta=meta)


def _parse(domains, labels, rpaths, mpaths, progress, name, fingerprint) -> Dataset:
    per: list[DomainRatings] = []
    steps = len(domains) * (2 if mpaths else 1)
    with tqdm(total=steps, desc=f"load {name}", unit="file", disable=not progress) as bar:
        for label, path in zip(labels, rpaths, strict=True):
            per.append(read_ratings(path, label, progress))
            bar.update()
        meta_recs: list[dict | None] = [None] * len(domains)
        if mpaths:
            for d, (label, path) in enumerate(zip(labels, mpaths, strict=True)):
                meta_recs[d] = read_metadata(path, set(per[d].asins.tolist()), label, progress)
                bar.update()

    sizes = [len(r.asins) for r in per]
    offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    n_items = int(offsets[-1])
    source_id = _object_array(np.concatenate([r.asins for r in per]).tolist())
    item_domain = np.repeat(np.arange(len(domains), dtype=np.int16), sizes)
    asin_counts = pd.Series(source_id).value_counts()
    meta: dict = {
        "loader": LOADER_VERSION,
        "domains": ["/".join(d) for d in domains],
        "files": [str(p) for p in rpaths + (mpaths or [])],
        "metadata": bool(mpaths),
        "raw_interactions": {lab: len(r.day) for lab, r in zip(labels, per, strict=True)},
        "raw_items": dict(zip(labels, sizes, strict=True)),
        "asin_collisions": int((asin_counts > 1).sum()),
    }

    item = np.concatenate([r.item_codes.astype(np.int64) + offsets[d] for d, r in enumerate(per)])
    day = np.concatenate([r.day for r in per])
    rating = np.concatenate([r.rating for r in per])
    user_codes, user_uniq = factorize_ids([r.users for r in per])
    del per
    line = np.arange(len(item), dtype=np.int64)

    text = None
    if mpaths:
        keep = np.zeros(n_items, dtype=bool)
        cols: list[list] = [[] for _ in range(7)]
        no_meta = empty_title = 0
        for i in range(n_items):
            rec = meta_recs[int(item_domain[i])].get(source_id[i])
            if rec is None:
                no_meta += 1
            elif not rec[0]:
                empty_title += 1
            else:
                keep[i] = True
                for c, v in zip(cols, rec, strict=True):
                    c.append(v)
        keep_rows = keep[item]
        meta.update(
            dropped_items_no_metadata=no_meta,
            dropped_items_empty_title=empty_title,
            dropped_interactions=int(len(item) - keep_rows.sum()),
        )
        remap = np.cumsum(keep) - 1
        item, day, rating, line = remap[item[keep_rows]], day[keep_rows], rating[keep_rows], line[keep_rows]
        user_codes = user_codes[keep_rows]
        source_id, item_domain = source_id[keep], item_domain[keep]
        text = cols
        meta["asin_collisions_kept"] = int((pd.Series(source_id).value_counts() > 1).sum())
    used = np.zeros(len(user_uniq), dtype=bool)
    used[user_codes] = True
    user_remap = (np.cumsum(used) - 1).astype(np.int32)
    user = user_remap[user_codes]
    user_ids = user_uniq[used]
    if len(item) == 0:
        raise DataError("no interactions left after dropping items without metadata", rpaths[0].parent)

    items = _make_items(labels, source_id, item_domain, text)
    inter = Interactions(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        day=day.astype(np.int32),
        rating=rating.astype(np.float32),
        line=line,
        user_ids=user_ids,
    )
    meta.update(n_items=len(items), n_users=inter.n_users, n_interactions=len(inter))
    return Dataset(
        name=name, items=items, interactions=inter, synthetic=False, fingerprint=fingerprint, meta=meta
    )


def _make_items(labels, source_id, item_domain, text) -> Items:
    if text is None:
        return Items(domains=tuple(labels), source_id=source_id, domain=item_domain)
    title, cats, desc, feats, img, price, avg = text
    return Items(
        domains=tuple(labels),
        source_id=source_id,
        domain=item_domain,
        title=_object_array(title),
        categories=_object_array([tuple(c) for c in cats]),
        description=_object_array(desc),
        features=_object_array(feats),
        image_url=_object_array(img),
        price=np.asarray(price, dtype=np.float32),
        avg_rating=np.asarray(avg, dtype=np.float32),
    )


# ------------------------------------------------------------------------------------------ cache


def _cache_save(path: Path, ds: Dataset) -> None:
    """One .npz (columns + a JSON blob of item text and meta), written to a temp file, then renamed."""
    it, inter = ds.items, ds.interactions
    blob = {
        "name": ds.name,
        "fingerprint": ds.fingerprint,
        "synthetic": ds.synthetic,
        "domains": list(it.domains),
        "source_id": it.source_id.tolist(),
        "meta": ds.meta,
    }
    if it.has_content:
        for col in ("title", "categories", "description", "features", "image_url"):
            blob[col] = [list(v) if col == "categories" else v for v in getattr(it, col).tolist()]
    arrays = {
        "user": inter.user,
        "item": inter.item,
        "day": inter.day,
        "rating": inter.rating,
        "line": inter.line,
        "user_ids": inter.user_ids if inter.user_ids.dtype != object else inter.user_ids.astype("U"),
        "item_domain": it.domain,
        "blob": np.frombuffer(json.dumps(blob).encode("utf-8"), dtype=np.uint8),
    }
    if it.has_content:
        arrays["price"], arrays["avg_rating"] = it.price, it.avg_rating
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_checked(path, lambda fh: np.savez(fh, **arrays))  # + <name>.sha256, checked on every load
    except OSError as exc:
        log.warning("xmarket: could not write the parse cache %s (%s); continuing without it", path, exc)


def _cache_load(path: Path, name: str, fingerprint: str) -> Dataset | None:
    if not path.is_file():
        return None
    problem = verify_checked(path)
    if problem is None:
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            blob = json.loads(a["blob"].tobytes().decode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib, JSON, ...: any unreadable cache is rebuilt
            problem = f"unreadable ({type(exc).__name__}: {exc})"
    if problem is not None:
        log.warning("xmarket: parse cache %s is not used (%s); parsing the raw files again", path, problem)
        return None
    if blob.get("fingerprint") != fingerprint:
        return None
    if first_bad(a["rating"], *XMARKET_RATING_RANGE) is not None:  # parsed before ratings were range-checked
        return None  # parsed again, which names the line
    text = None
    if "title" in blob:
        text = [blob["title"], blob["categories"], blob["description"], blob["features"], blob["image_url"],
                a["price"], a["avg_rating"]]  # fmt: skip
    items = _make_items(blob["domains"], _object_array(blob["source_id"]), a["item_domain"], text)
    user_ids = a["user_ids"]
    if user_ids.dtype.kind == "U":
        user_ids = user_ids.astype(object)
    inter = Interactions(
        user=a["user"], item=a["item"], day=a["day"], rating=a["rating"], line=a["line"], user_ids=user_ids
    )
    meta = dict(blob["meta"], from_cache=str(path))
    return Dataset(
        name=name, items=items, interactions=inter, synthetic=bool(blob["synthetic"]),
        fingerprint=fingerprint, meta=meta,
    )  # fmt: skip


__all__ = [
    "CATEGORIES",
    "DEFAULT_DOMAINS",
    "MARKETS",
    "check_domains",
    "domain_labels",
    "file_signature",
    "load_xmarket",
    "parse_domains",
    "xmarket_file",
    "xmarket_files_present",
]
