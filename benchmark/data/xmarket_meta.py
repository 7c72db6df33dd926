"""XMarket metadata files -> per-item text, image URL, price and average rating (docs/protocol.md 1.3).

``metadata_<market>_<Category>.json.gz`` holds one JSON object or Python dict literal per line
(the official sample prints Python dicts); hostile lines are a :class:`DataError` naming the line.
"""

from __future__ import annotations

import ast
import gzip
import json
import math
import re
import zlib
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.data.images import best_image_url
from benchmark.data.numbers import AVERAGE_RATING_RANGE, PRICE_RANGE, check_number
from benchmark.errors import DataError

_PRICE_RE = re.compile(r"\d[\d,.]*")


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


def read_metadata(path: Path, wanted: set[str], label: str, progress: bool) -> dict[str, tuple]:
    """asin -> (title, categories, description, features, image_url, price, avg_rating), wanted asins only."""
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
