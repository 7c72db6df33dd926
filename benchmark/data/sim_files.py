"""xmarket-sim's output in XMarket's raw formats: reviewer ids, file order, ratings and metadata files.

``ratings_us_<Category>.txt.gz`` (``userId itemId rating date``) and ``metadata_us_<Category>.json.gz``
(one record per item with every key of XMarket's official sample; docs/protocol.md 1.3), gzip
with mtime 0 so the bytes depend on the seed only.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from benchmark.data.sim_behaviour import Rows
from benchmark.data.sim_catalogue import Sampler, World
from benchmark.data.sim_config import EPOCH, SimConfig, component_rng


def reviewer_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """Amazon-reviewer-like ids: 'A' + 27 uppercase alphanumerics, unique, as uint8 [n, 28]."""
    alnum = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    out = np.empty((n, 28), dtype=np.uint8)
    out[:, 0] = ord("A")
    out[:, 1:] = alnum[rng.integers(0, 36, size=(n, 27))]
    while True:
        _, first = np.unique(out.view("S28").ravel(), return_index=True)
        if len(first) == n:
            return out
        dup = np.setdiff1d(np.arange(n), first)
        out[dup, 1:] = alnum[rng.integers(0, 36, size=(len(dup), 27))]


def file_order(user: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A deterministic shuffle (real files are not sorted by date) that keeps each user's
    same-day rows in walk order, so sorting by (date, file line) recovers the planted sequence."""
    key = rng.random(len(user))
    grp_order = np.lexsort((np.arange(len(user)), day, user))  # rows arrive in walk order
    g = np.r_[0, np.cumsum((np.diff(user[grp_order]) != 0) | (np.diff(day[grp_order]) != 0))]
    sorted_keys = key[grp_order][np.lexsort((key[grp_order], g))]
    new_key = np.empty_like(key)
    new_key[grp_order] = sorted_keys
    return np.argsort(new_key, kind="stable")


def _gzip_open(path: Path, level: int):
    raw = open(path, "wb")  # closed with the GzipFile below
    return raw, gzip.GzipFile(filename=path.name[:-3], mode="wb", fileobj=raw, compresslevel=level, mtime=0)


def write_ratings(
    path: Path, uid: np.ndarray, asin: np.ndarray, rating: np.ndarray, day: np.ndarray, level: int
) -> None:
    """``userId itemId rating date``: ratings written as integers, like XMarket's own sample
    (its documented read shows ``3``, ``5``; 4.0 only appears in FOREC's derived files)."""
    d0, d1 = int(day.min()), int(day.max())
    table = np.array([str(EPOCH + np.timedelta64(d, "D")) for d in range(d0, d1 + 1)], dtype="S10")
    table = table.view(np.uint8).reshape(-1, 10)
    raw, gz = _gzip_open(path, level)
    try:
        step = 1 << 20
        for a in range(0, len(rating), step):
            b = min(a + step, len(rating))
            line = np.empty((b - a, 53), dtype=np.uint8)
            line[:, 0:28] = uid[a:b]
            line[:, 28] = 32
            line[:, 29:39] = asin[a:b]
            line[:, 39] = 32
            line[:, 40] = rating[a:b] + ord("0")
            line[:, 41] = 32
            line[:, 42:52] = table[day[a:b] - d0]
            line[:, 52] = 10
            gz.write(line.tobytes())
    finally:
        gz.close()
        raw.close()


def write_metadata(path: Path, records: list[dict], level: int) -> None:
    raw, gz = _gzip_open(path, level)
    try:
        for a in range(0, len(records), 20_000):
            gz.write("".join(json.dumps(r) + "\n" for r in records[a : a + 20_000]).encode("utf-8"))
    finally:
        gz.close()
        raw.close()


def item_metadata(
    cfg: SimConfig, world: World, rows: Rows, texts: dict, has_img: np.ndarray, seed: int
) -> list[dict]:
    """One record per item with every key of XMarket's official sample (docs/protocol.md 1.3).

    Image URLs are paths relative to the dataset directory (``images/<asin>.png``; the loader
    resolves them against wherever the dataset lies), so the files' bytes, the dataset fingerprint
    and every run key are the same wherever the twin is generated, copied or moved.
    """
    rng = component_rng(seed, 6)
    n = len(world.domain)
    asin = world.asin.view("S10").ravel().astype(str)
    star = np.bincount(rows.item.astype(np.int64) * 5 + rows.rating - 1, minlength=n * 5).reshape(n, 5)
    count = star.sum(1)
    avg = (star * np.arange(1, 6)).sum(1) / np.maximum(count, 1)
    pct = np.rint(100.0 * star / np.maximum(count, 1)[:, None]).astype(int)
    top = count >= np.quantile(count, 0.99) if n > 1 else np.zeros(n, dtype=bool)
    base_price = np.array([14.0, 35.0, 12.0, 20.0])[np.minimum(world.domain, 3)]
    price = np.round(base_price * rng.lognormal(0.0, 0.6, n), 0) - 0.01
    price_ok = rng.random(n) >= cfg.price_missing
    cell = world.theme.astype(np.int64) * len(cfg.domains) + world.domain
    uniform = Sampler(cell, np.ones(n), cfg.n_themes * len(cfg.domains))
    viewed = uniform.draw(np.repeat(cell[:, None], 6, 1), rng.random((n, 6)))
    books = cfg.domains.index("Books") if "Books" in cfg.domains else -1
    out = []
    for i in range(n):
        a = asin[i]
        if has_img[i]:
            big = f"images/{a}.png"
            small = f"images/{a}._SX24_.png"  # never written: loaders take the largest
            half = cfg.image_size // 2
            img_url: object = json.dumps(
                {small: [half, half], big: [cfg.image_size, cfg.image_size]}, separators=(",", ":")
            )
        else:
            img_url = []
        c = int(count[i])
        brand = texts["brand"][i]
        is_book = int(world.domain[i]) == books
        rel = sorted({asin[j] for j in viewed[i] if j != i})
        out.append(
            {
                "asin": a,
                "title": texts["title"][i],
                "averageRating": f"{avg[i]:.1f}" if c else "",
                "ratingCount": (f"{c:,} global ratings" if c != 1 else "1 global rating") if c else "",
                "amazon_badge": "Best Seller" if top[i] and c else "",
                "ratingDist": {str(s): f"{pct[i, s - 1]}%" for s in range(5, 0, -1)} if c else {},
                "ratingByFeature": {},
                "price": f"${price[i]:.2f}" if price_ok[i] else "",
                "imgUrl": img_url,
                "related": {
                    "sponsored": [],
                    "alsoBought": [],
                    "alsoViewed": rel,
                    "boughtTogether": [],
                    "compared": [],
                },
                "productDetails": {"Publisher": brand, "Language": "English", "ISBN-10": a}
                if is_book
                else {"Manufacturer": brand, "ASIN": a},
                "sellerPage": "" if is_book else f"/stores/{brand}/page/{a}",
                "categories": texts["categories"][i],
                "description": texts["description"][i],
                "overviewFeatures": {} if is_book else {"Brand": brand},
                "features": texts["features"][i],
                "reviewFilters": [],
            }
        )
    return out
