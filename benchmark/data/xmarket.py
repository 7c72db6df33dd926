"""The XMarket loader: raw FULL files -> :class:`Dataset` (docs/protocol.md 1.3 and 1.4).

Reads ``ratings_<market>_<Category>.txt.gz`` (space-separated ``userId itemId rating date``, no
header) and, when present, ``metadata_<market>_<Category>.json.gz`` (one JSON object or Python
dict literal per line). Files are looked up as ``<data_dir>/<market>/<Category>/<file>`` (the
download layout, docs/protocol.md 1.1) or flat as ``<data_dir>/<file>``.

Interactions are parsed column-wise: pyarrow's CSV reader (fast path) or, for any file it
declines, the pandas C engine in chunks, which reports the offending line; ids are factorised
from the raw Arrow buffers. The paper-scale data (~15M rows) never becomes per-row Python objects.
Items are keyed by ``(domain, asin)``, so an ASIN listed in two categories is two items
(docs/protocol.md 1.4 step 1).
The synthetic twin writes the same files plus ``SIMULATED.json``, which marks the dataset synthetic.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import logging
import math
import re
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.numbers import (
    AVERAGE_RATING_RANGE,
    PRICE_RANGE,
    XMARKET_RATING_RANGE,
    check_number,
    check_range,
    first_bad,
)
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

_CHUNK_ROWS = 1_000_000
_SIGNATURE_BYTES = 1 << 20
_PRICE_RE = re.compile(r"\d[\d,.]*")


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


# ---------------------------------------------------------------------------------------- ratings


@dataclass
class _DomainRatings:
    users: pa.ChunkedArray  # string [m]
    item_codes: np.ndarray  # int32 [m], domain-local
    asins: np.ndarray  # object[str] [n_d]
    day: np.ndarray  # int32 [m]
    rating: np.ndarray  # float32 [m]


def _gzip_lines_before_failure(path: Path) -> int:
    """Count the complete lines a corrupt gzip yields before it fails (for the error message)."""
    n = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read1(1 << 16):
                n += chunk.count(b"\n")
    except (EOFError, OSError, zlib.error):
        pass
    return n


def _gzip_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, gzip.BadGzipFile):
        return DataError(f"not a gzip file ({exc})", path)
    line = _gzip_lines_before_failure(path) + 1
    return DataError(f"truncated or corrupt gzip ({exc}); re-download or re-copy the file", path, line)


def _first_non_utf8_line(path: Path) -> int | None:
    """The 1-based number of the first line that is not valid UTF-8 (None if every line is)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _first_line(mask: np.ndarray, start: int) -> int:
    return start + int(np.flatnonzero(mask)[0]) + 1


def _check_chunk(path: Path, ch: pd.DataFrame, start: int) -> None:
    """Column count and empty fields (a short line leaves '' in its last columns)."""
    if ch.shape[1] != 4:
        extra = ch.iloc[:, 4:].to_numpy(dtype=object) != ""
        line = _first_line(extra.any(axis=1), start) if extra.any() else start + 1
        raise DataError(f"{ch.shape[1]} columns, expected 4 (userId itemId rating date)", path, line)
    for col, what in ((0, "userId"), (1, "itemId"), (3, "date")):
        empty = ch[col].to_numpy(dtype=object) == ""
        if empty.any():
            raise DataError(
                f"missing {what}: expected 4 space-separated columns (userId itemId rating date)",
                path,
                _first_line(empty, start),
            )


def _parse_days(path: Path, dates: np.ndarray, start: int) -> np.ndarray:
    """``YYYY-MM-DD`` -> days since 1970-01-01 (int32), parsing each distinct date once."""
    codes, uniq = pd.factorize(dates)
    parsed = pd.to_datetime(pd.Index(uniq, dtype=object), format="%Y-%m-%d", errors="coerce")
    bad = np.asarray(parsed.isna())
    if bad.any():
        row_bad = bad[codes]
        line = _first_line(row_bad, start)
        raise DataError(f"unparseable date {dates[line - start - 1]!r} (expected YYYY-MM-DD)", path, line)
    days = parsed.to_numpy(dtype="datetime64[D]").astype(np.int64)
    return days[codes].astype(np.int32)


def _diagnose_rating(path: Path, exc: ValueError) -> DataError:
    """The fast path failed to read ratings as float32: find the offending line."""
    start = 0
    reader = pd.read_csv(
        path, sep=" ", header=None, quotechar='"', na_filter=False, dtype=object, chunksize=_CHUNK_ROWS
    )
    for ch in reader:
        _check_chunk(path, ch, start)
        raw = ch[2].to_numpy(dtype=object)
        bad = pd.to_numeric(pd.Series(raw), errors="coerce").isna().to_numpy() & (raw != "nan")
        if bad.any():
            line = _first_line(bad, start)
            return DataError(f"unparseable rating {raw[line - start - 1]!r}", path, line)
        start += len(ch)
    return DataError(f"cannot parse ratings ({exc})", path)


def _read_ratings_strict(path: Path, label: str, progress: bool) -> _DomainRatings:
    """The reference reader (pandas C engine, in chunks): any malformed line is a DataError naming it.

    Used when the fast path declines a file, so bad input is always reported by line.
    """
    users, items, days, ratings = [], [], [], []
    start = 0
    bar = tqdm(desc=f"ratings {label}", unit="rows", unit_scale=True, leave=False, disable=not progress)
    try:
        reader = pd.read_csv(
            path,
            sep=" ",
            header=None,
            quotechar='"',
            na_filter=False,
            dtype={0: object, 1: object, 2: np.float32, 3: object},
            chunksize=_CHUNK_ROWS,
            engine="c",
        )
        for ch in reader:
            _check_chunk(path, ch, start)
            days.append(_parse_days(path, ch[3].to_numpy(dtype=object), start))
            users.append(ch[0].to_numpy(dtype=object))
            items.append(ch[1].to_numpy(dtype=object))
            ratings.append(ch[2].to_numpy(dtype=np.float32))
            start += len(ch)
            bar.update(len(ch))
    except pd.errors.EmptyDataError:
        raise DataError("ratings file is empty", path) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        detail = str(exc).split("C error: ")[-1].strip()
        raise DataError(f"malformed ratings line: {detail}", path, int(m.group(1)) if m else None) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _gzip_error(path, exc) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path, _first_non_utf8_line(path)) from None
    except ValueError as exc:
        raise _diagnose_rating(path, exc) from None
    finally:
        bar.close()
    if start == 0:
        raise DataError("ratings file is empty", path)
    codes, asins = pd.factorize(np.concatenate(items))
    return _DomainRatings(
        users=pa.chunked_array([pa.array(u, type=pa.string()) for u in users]),
        item_codes=codes.astype(np.int32),
        asins=np.asarray(asins, dtype=object),
        day=np.concatenate(days),
        rating=np.concatenate(ratings),
    )


def _read_ratings_fast(path: Path) -> _DomainRatings | None:
    """pyarrow's multi-threaded CSV reader with the same dialect; None = let the strict reader decide.

    It rejects wrong column counts, non-numeric ratings and non-ISO dates itself; empty ids are
    checked here. Whatever it declines goes to :func:`_read_ratings_strict`, which names the line.
    """
    columns = ["userId", "itemId", "rating", "date"]
    try:
        with pa.input_stream(str(path), compression="gzip" if path.suffix == ".gz" else None) as f:
            t = pacsv.read_csv(
                f,
                read_options=pacsv.ReadOptions(column_names=columns, block_size=16 << 20),
                parse_options=pacsv.ParseOptions(delimiter=" ", quote_char='"'),
                convert_options=pacsv.ConvertOptions(
                    column_types={
                        "userId": pa.string(),
                        "itemId": pa.string(),
                        "rating": pa.float32(),
                        "date": pa.date32(),
                    },
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
    except (pa.ArrowException, OSError, ValueError, EOFError):
        return None
    if t.num_rows == 0 or any(pc.min(pc.utf8_length(t[c])).as_py() == 0 for c in ("userId", "itemId")):
        return None
    codes, asins = factorize_ids([t["itemId"]])
    return _DomainRatings(
        users=t["userId"],
        item_codes=codes.astype(np.int32),
        asins=np.char.decode(asins, "utf-8").astype(object),
        day=pc.cast(t["date"], pa.int32()).to_numpy(),
        rating=t["rating"].to_numpy(),
    )


def _raw_field(path: Path, line: int, column: int) -> str | None:
    """The text of one field of one line (for an error message; reads the file up to that line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if lineno == line:
                    fields = raw.decode("utf-8", "replace").split()
                    return fields[column] if len(fields) > column else None
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _read_ratings(path: Path, label: str, progress: bool) -> _DomainRatings:
    """One ratings file: the fast columnar reader, or the strict one for anything it declines.

    Ratings must be finite star ratings (``nan``, ``inf`` or a 5000-digit number parse as floats
    and are refused here with their line).
    """
    fast = _read_ratings_fast(path)
    out = fast if fast is not None else _read_ratings_strict(path, label, progress)
    bad = first_bad(out.rating, *XMARKET_RATING_RANGE)
    if bad is not None:
        raw = _raw_field(path, bad + 1, 2)
        check_range(out.rating[bad:bad + 1], "rating", path, XMARKET_RATING_RANGE, first_line=bad + 1,
                    raw=None if raw is None else np.array([raw], dtype=object))
    return out


def _fixed_width(arrays: list) -> tuple[np.ndarray, np.ndarray]:
    """Arrow string arrays -> a zero-padded ``uint8 [n, W8]`` byte matrix (W8 = max length rounded
    up to 8) and the lengths; built per Arrow chunk from the raw buffers, no Python strings."""
    chunks = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
    chunks = [c.cast(pa.string()) if c.type != pa.string() else c for c in chunks]
    spans = []
    for c in chunks:
        offs = np.frombuffer(c.buffers()[1], dtype=np.int32, count=len(c) + 1, offset=c.offset * 4)
        spans.append((offs, c.buffers()[2]))
    width = max((int(np.diff(o).max()) for o, _ in spans if len(o) > 1), default=1)
    w8 = max(8, -(-width // 8) * 8)
    n = sum(len(o) - 1 for o, _ in spans)
    mat = np.zeros((n, w8), dtype=np.uint8)
    lens = np.empty(n, dtype=np.int32)
    pos = 0
    for offs, buf in spans:
        m = len(offs) - 1
        if m == 0:
            continue
        ln = np.diff(offs)
        data = (
            np.frombuffer(buf, dtype=np.uint8)[offs[0] : offs[-1]]
            if buf is not None
            else np.zeros(0, np.uint8)
        )
        if (ln == ln[0]).all():
            mat[pos : pos + m, : ln[0]] = data.reshape(m, ln[0])
        else:
            rows = np.repeat(np.arange(m), ln)
            cols = np.arange(len(data)) - np.repeat(offs[:-1] - offs[0], ln)
            mat[pos + rows, cols] = data
        lens[pos : pos + m] = ln
        pos += m
    return mat, lens


def _hash_rows(mat: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """A 64-bit hash per padded row (multiply-xorshift over its 8-byte words and its length)."""
    words = mat.view(np.uint64)
    h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for j in range(words.shape[1]):
        h ^= words[:, j]
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return h


def factorize_ids(arrays: list) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``pd.factorize`` of Arrow string ids (codes in first-appearance order, uniques as bytes).

    ~15M 28-char reviewer ids are too slow to hash as Python strings; instead each padded id is
    folded into a 64-bit hash, the hashes are factorised, and every row is then checked against its
    code's first row. A hash collision (never seen; ~1e-6 at XMarket scale) falls back to pandas.
    """
    mat, lens = _fixed_width(arrays)
    h = _hash_rows(mat, lens)
    codes, _ = pd.factorize(h)
    del h
    if len(codes) == 0:
        return codes.astype(np.int64), np.zeros(0, dtype="S1")
    first = np.flatnonzero(np.r_[True, codes[1:] > np.maximum.accumulate(codes[:-1])])
    block = 1 << 21
    for s in range(0, len(codes), block):
        rep = first[codes[s : s + block]]
        if not (
            np.array_equal(mat[rep], mat[s : s + block]) and np.array_equal(lens[rep], lens[s : s + block])
        ):
            obj = np.concatenate([a.to_numpy(zero_copy_only=False) for a in arrays])
            codes, uniq = pd.factorize(obj)
            return codes.astype(np.int64), np.char.encode(uniq.astype(str), "utf-8")
    uniq = mat[first].view(f"S{mat.shape[1]}").ravel()
    return codes.astype(np.int64), uniq.astype(f"S{max(int(lens.max()), 1)}")


# --------------------------------------------------------------------------------------- metadata


def _parse_price(value: object) -> float:
    """Locale price string -> float (``'$1,299.00'`` -> 1299.0, ``'12,99 €'`` -> 12.99); nan if none."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _PRICE_RE.search(str(value or ""))
    if not m:
        return math.nan
    s = m.group(0).rstrip(".,")
    if "," in s and "." not in s and len(s.rsplit(",", 1)[1]) == 2:
        s = s.replace(",", ".")  # decimal comma
    elif "," in s and "." in s and s.rfind(",") > s.rfind("."):
        s = s.replace(".", "").replace(",", ".")  # 1.299,00
    else:
        s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        return math.nan


def _as_float(value: object) -> float:
    try:
        return float(str(value).strip()) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v).strip() for v in value if str(v).strip())
    return str(value).strip()


def _parse_meta_line(path: Path, line: str, lineno: int) -> list[dict]:
    """json.loads, then ast.literal_eval (the official sample prints Python dicts); a list extends.

    Hostile lines (a 5000-digit number, 100k nested brackets) are a DataError naming the line.
    """
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, nesting
        first = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:120]
        try:
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise DataError(
                f"malformed metadata line (neither JSON nor a Python dict literal: {first})", path, lineno
            ) from None
    recs = obj if isinstance(obj, list) else [obj]
    for rec in recs:
        if not isinstance(rec, dict) or not str(rec.get("asin") or "").strip():
            raise DataError("metadata record is not an object with an 'asin'", path, lineno)
    return recs


def _read_metadata(path: Path, wanted: set[str], label: str, progress: bool) -> dict[str, tuple]:
    """asin -> (title, categories, description, features, image_url, price, avg_rating), wanted asins only."""
    from benchmark.data.images import best_image_url

    out: dict[str, tuple] = {}
    lineno = 0
    try:
        with gzip.open(path, "rb") as f:  # decoded per line, so a bad byte is reported on its own line
            for lineno, raw in enumerate(
                tqdm(
                    f,
                    desc=f"metadata {label}",
                    unit="lines",
                    unit_scale=True,
                    leave=False,
                    disable=not progress,
                ),
                start=1,
            ):
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                for rec in _parse_meta_line(path, line, lineno):
                    asin = str(rec["asin"]).strip()
                    if asin not in wanted or asin in out:
                        continue
                    cats = rec.get("categories") or ()
                    out[asin] = (
                        _as_text(rec.get("title")),
                        tuple(str(c) for c in cats) if isinstance(cats, (list, tuple)) else (str(cats),),
                        _as_text(rec.get("description")),
                        _as_text(rec.get("features")),
                        best_image_url(rec.get("imgUrl", rec.get("imUrl"))),
                        check_number(_parse_price(rec.get("price")), "price", path, PRICE_RANGE, lineno,
                                     rec.get("price")),
                        check_number(_as_float(rec.get("averageRating")), "averageRating", path,
                                     AVERAGE_RATING_RANGE, lineno, rec.get("averageRating")),
                    )
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if isinstance(exc, gzip.BadGzipFile):
            raise DataError(f"not a gzip file ({exc})", path) from None
        raise DataError(
            f"truncated or corrupt gzip ({exc}); re-download or re-copy the file", path, lineno + 1
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)", path, lineno) from None
    if lineno == 0:
        raise DataError("metadata file is empty", path)
    return out


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
    per: list[_DomainRatings] = []
    steps = len(domains) * (2 if mpaths else 1)
    with tqdm(total=steps, desc=f"load {name}", unit="file", disable=not progress) as bar:
        for label, path in zip(labels, rpaths, strict=True):
            per.append(_read_ratings(path, label, progress))
            bar.update()
        meta_recs: list[dict | None] = [None] * len(domains)
        if mpaths:
            for d, (label, path) in enumerate(zip(labels, mpaths, strict=True)):
                meta_recs[d] = _read_metadata(path, set(per[d].asins.tolist()), label, progress)
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
