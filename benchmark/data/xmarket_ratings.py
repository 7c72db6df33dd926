"""XMarket ratings files -> columns: the fast columnar reader, the strict one and the error diagnosis.

A ratings file (``userId itemId rating date``, space-separated, no header; docs/protocol.md 1.3) is
parsed column-wise: pyarrow's CSV reader (fast path) or, for any file it declines, the pandas C
engine in chunks, which reports the offending line; ids are factorised from the raw Arrow buffers
(:func:`factorize_ids`). Bad input is a :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from benchmark.data.numbers import XMARKET_RATING_RANGE, check_range, first_bad
from benchmark.errors import DataError

_CHUNK_ROWS = 1_000_000


@dataclass
class DomainRatings:
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


def _read_ratings_strict(path: Path, label: str, progress: bool) -> DomainRatings:
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
    return DomainRatings(
        users=pa.chunked_array([pa.array(u, type=pa.string()) for u in users]),
        item_codes=codes.astype(np.int32),
        asins=np.asarray(asins, dtype=object),
        day=np.concatenate(days),
        rating=np.concatenate(ratings),
    )


def _read_ratings_fast(path: Path) -> DomainRatings | None:
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
    return DomainRatings(
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


def read_ratings(path: Path, label: str, progress: bool) -> DomainRatings:
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
