"""Item images: pick the URL from XMarket's ``imgUrl`` and fetch it into a local cache.

docs/protocol.md 1.3: ``imgUrl`` is ``[]`` (no image) or a JSON-encoded string of a dict
``{url: [width, height]}`` (Amazon's dynamic-image map); we take the largest-area URL
(docs/protocol.md 1.4 step 6). Images are downloaded once, offline afterwards; an item whose image is
missing keeps ``image_path == ''`` and content methods give it a masked zero vector.
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import io
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmark.data.model import Items
from benchmark.fsutil import atomic_write_text, cache_entry_refusal

log = logging.getLogger(__name__)

TIMEOUT = 20  # seconds per image request
WORKERS = 8  # parallel HTTP fetches; file:// copies are cheap either way
GIVE_UP_AFTER = 8  # consecutive connection failures with no success: the host is unreachable
MISSING_TSV = "missing_images.tsv"
_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def best_image_url(img_url_field) -> str:
    """The largest-area URL of an ``imgUrl`` value; '' when there is none or it cannot be read.

    Accepts the raw forms seen in the wild: ``[]``, ``''``, ``None``, a JSON (or Python-literal)
    encoded dict string, an already-decoded dict, a plain URL string, or a list of URLs.
    Ties in area keep the first key (dict order is file order).
    """
    value = img_url_field
    if value is None:
        return ""
    if isinstance(value, str):
        s = value.strip()
        if not s or s in ("[]", "{}"):
            return ""
        if s[0] in "{[":
            try:
                value = json.loads(s)
            except (ValueError, RecursionError):  # malformed, too deep, or a number too long
                try:
                    value = ast.literal_eval(s)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    return ""
        else:
            return s
    if isinstance(value, (list, tuple)):
        return next((str(v).strip() for v in value if isinstance(v, str) and v.strip()), "")
    if isinstance(value, dict):
        best, best_area = "", -1.0
        for url, size in value.items():
            try:
                area = float(size[0]) * float(size[1])
            except (TypeError, ValueError, IndexError):
                area = 0.0
            if str(url).strip() and area > best_area:
                best, best_area = str(url).strip(), area
        return best
    return ""


def _cache_stems(items: Items) -> np.ndarray:
    """File stem per item: the ASIN when safe and unique, else ASIN + domain, else a hash."""
    ids = items.source_id
    counts: dict[str, int] = {}
    for s in ids:
        counts[s] = counts.get(s, 0) + 1
    stems = np.empty(len(ids), dtype=object)
    for i, s in enumerate(ids):
        stem = s if counts[s] == 1 else f"{s}-d{int(items.domain[i])}"
        stems[i] = stem if _SAFE.match(stem) else hashlib.sha1(stem.encode()).hexdigest()[:20]
    return stems


def _ext(url: str) -> str:
    ext = Path(urllib.parse.urlparse(url).path).suffix.lower()
    return ext if ext in _EXTS else ".jpg"


@functools.lru_cache(maxsize=4096)
def _host_refusal(host: str) -> str:
    """'' when every address of ``host`` is a public one, else why it is refused (no local fetches)."""
    if not host:
        return "refused: URL has no host"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        return f"unreachable: cannot resolve {host} ({exc})"
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not addr.is_global or addr.is_multicast:
            return f"refused: {host} resolves to the non-public address {addr}"
    return ""


def url_refusal(url: str, allowed_root: Path | None) -> str:
    """'' when the benchmark may read ``url``, else the reason it is recorded as a missing image.

    Allowed: http(s) to public addresses, and file:// paths inside the dataset's own directory
    (``allowed_root``; symlinks resolved). Everything else (other schemes, localhost, private
    networks, files elsewhere on the machine) is refused.
    """
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return _host_refusal(parsed.hostname or "")
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return "refused: file:// URL with a host"
        src = Path(urllib.request.url2pathname(parsed.path)).resolve()
        if allowed_root is None or not src.is_relative_to(Path(allowed_root).resolve()):
            return "refused: file:// path outside the dataset directory"
        return ""
    return f"unsupported URL scheme {scheme!r}"


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another public http(s) address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        why = url_refusal(newurl, None) if newurl.lower().startswith(("http:", "https:")) else "non-http redirect"
        if why:
            raise urllib.error.URLError(f"redirect to {newurl} {why}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_CheckedRedirects)


def _fetch_one(url: str, dest: Path, allowed_root: Path | None = None) -> str:
    """Fetch one image atomically; '' on success, else the reason. Decodability is checked with PIL.

    A local (file://) image inside ``allowed_root`` is hard-linked into the cache when the
    filesystem allows it (the twin's images would otherwise be stored twice), else copied.
    """
    from PIL import Image, UnidentifiedImageError

    why = url_refusal(url, allowed_root)
    if why:
        return why
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        if scheme == "file":
            src = Path(urllib.request.url2pathname(parsed.path)).resolve()
            if not src.is_file():
                return "file not found"
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        else:
            req = urllib.request.Request(url, headers={"User-Agent": "uie-bench"})
            with _OPENER.open(req, timeout=TIMEOUT) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
        try:
            with Image.open(tmp) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"not an image ({type(exc).__name__})"
        os.replace(tmp, dest)
        return ""
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return f"unreachable: {exc.reason}"
    except (TimeoutError, OSError) as exc:
        return f"unreachable: {exc}"
    finally:
        tmp.unlink(missing_ok=True)


def fetch_images(items: Items, cache_dir: Path, progress: bool = True, allowed_root: Path | None = None) -> Items:
    """Return ``items`` with ``image_path`` filled from ``cache_dir`` ('' = missing).

    Already-cached files are reused; the rest are fetched (http, https, file://) with bounded
    timeouts. Failures are listed in ``cache_dir/missing_images.tsv`` (asin, url, reason). When a
    host refuses every connection (offline machine), the remaining URLs are skipped, not retried.
    Items without an image URL are simply missing and not listed. Only http(s) URLs to public
    addresses and file:// paths inside ``allowed_root`` are read (:func:`url_refusal`); a cached
    file is reused only if its URL is still allowed and it is a plain file of ``cache_dir`` (a
    symbolic link or a file whose real path is elsewhere is named in a warning and fetched again).
    """
    cache_dir = Path(cache_dir)
    n = len(items)
    urls = items.image_url if items.image_url is not None else np.full(n, "", dtype=object)
    paths = np.full(n, "", dtype=object)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stems = _cache_stems(items)
    todo: list[tuple[int, Path]] = []
    for i in np.flatnonzero(np.array([bool(u) for u in urls], dtype=bool)):
        dest = cache_dir / f"{stems[i]}{_ext(urls[i])}"
        refusal = cache_entry_refusal(dest, cache_dir) if dest.is_file() or dest.is_symlink() else None
        if refusal is not None:  # a planted link: never opened; fetched again over it (os.replace swaps the link)
            log.warning("images: cache entry %s is not used (%s); fetching the image again", dest, refusal)
            dest.unlink(missing_ok=True)  # the link itself, never what it points to
        elif dest.is_file() and dest.stat().st_size > 0 and not url_refusal(urls[i], allowed_root):
            paths[i] = str(dest)
            continue
        todo.append((int(i), dest))

    failed: list[tuple[str, str, str]] = []
    if todo:
        _run(todo, urls, paths, failed, items, progress, allowed_root)
    tsv = cache_dir / MISSING_TSV
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["asin", "url", "reason"])
    w.writerows(failed)
    atomic_write_text(tsv, buf.getvalue())
    if failed:
        log.warning("images: %d of %d image URLs could not be fetched; see %s", len(failed), len(todo), tsv)
    return replace(items, image_path=paths)


def _run(todo, urls, paths, failed, items, progress, allowed_root=None) -> None:
    """Fetch ``todo`` in a thread pool; stop early once the host is evidently unreachable."""
    streak, successes, gave_up = 0, 0, False
    with (
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
        tqdm(total=len(todo), desc="images", unit="img", disable=not progress) as bar,
    ):
        for start in range(0, len(todo), WORKERS * 4):
            batch = todo[start : start + WORKERS * 4]
            if gave_up:
                for i, _ in batch:
                    failed.append((items.source_id[i], urls[i], "skipped: image host unreachable"))
                bar.update(len(batch))
                continue
            for (i, dest), reason in zip(
                batch, pool.map(lambda t: _fetch_one(urls[t[0]], t[1], allowed_root), batch), strict=True
            ):
                if reason:
                    failed.append((items.source_id[i], urls[i], reason))
                    streak = streak + 1 if reason.startswith("unreachable") else 0
                else:
                    paths[i] = str(dest)
                    successes, streak = successes + 1, 0
            bar.update(len(batch))
            if successes == 0 and streak >= GIVE_UP_AFTER:
                gave_up = True
                log.warning("images: image host unreachable; skipping the remaining downloads")
