"""Download the XMarket FULL files (docs/protocol.md 1.1), resumably, and verify them.

Each file goes to ``<data_dir>/<market>/<Category>/<file>`` (the server's own layout, which
:func:`benchmark.data.xmarket.load_xmarket` reads). Bytes land in ``<file>.part``; an
interrupted download resumes with an HTTP Range request; the file is renamed into place only
after its size (and sha256, when ``datasets/xmarket.yaml`` knows them) check out.
"""

from __future__ import annotations

import gzip
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from benchmark.data.xmarket import DEFAULT_DOMAINS, FILE_PATTERNS, check_domains
from benchmark.errors import ConfigError, DataError
from benchmark.fsutil import sha256_file

XMARKET_BASE_URL = "https://ciir.cs.umass.edu/downloads/XMarket/FULL"
CARD_PATH = Path(__file__).resolve().parents[2] / "datasets" / "xmarket.yaml"
TIMEOUT = 60  # seconds without data before a request fails
_CHUNK = 1 << 20


def xmarket_relpath(market: str, category: str, kind: str) -> str:
    """``us/Books/ratings_us_Books.txt.gz``: the path under the base URL and under the data dir."""
    if kind not in FILE_PATTERNS:
        raise ConfigError(f"unknown XMarket file kind {kind!r}; valid: {', '.join(FILE_PATTERNS)}")
    return f"{market}/{category}/" + FILE_PATTERNS[kind].format(market=market, category=category)


def card_checksums(card: Path | None = None) -> dict[str, tuple[int | None, str | None]]:
    """``relpath -> (size, sha256)`` from the dataset card; unknown values are None."""
    path = Path(card) if card is not None else CARD_PATH
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"dataset card is not valid YAML ({exc})".replace("\n", " "), path) from None
    out: dict[str, tuple[int | None, str | None]] = {}
    for entry in doc.get("files") or []:
        if isinstance(entry, dict) and entry.get("path"):
            size, sha = entry.get("size"), entry.get("sha256")
            out[str(entry["path"])] = (
                int(size) if size is not None else None,
                str(sha).lower() if sha else None,
            )
    return out


@dataclass
class Fetched:
    """What a fetch did, file by file: never "fetched" for a file it did not download."""

    downloaded: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)  # already in place: checked, not downloaded
    unverified: list[Path] = field(default_factory=list)  # no sha256 in the card (downloaded or present)

    @property
    def paths(self) -> list[Path]:
        return self.downloaded + self.present

    def summary(self, data_dir: Path) -> str:
        """One line for the CLI: what was downloaded, what was already there, what nothing verified."""
        parts = [f"fetched {len(self.downloaded)} file(s)", f"{len(self.present)} already present"]
        line = f"{', '.join(parts)} in {data_dir}; each one size-checked and gzip-tested"
        if self.unverified:
            line += f"; {len(self.unverified)} not verified against a sha256 (none in the card)"
        return line


def gzip_problem(path: Path) -> str | None:
    """None when ``path`` decompresses to its end (CRC and length checked), else what is wrong."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(_CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        return f"not a complete gzip file ({type(exc).__name__}: {exc})"
    return None


def fetch_xmarket(
    data_dir: Path,
    domains=DEFAULT_DOMAINS,
    kinds=("ratings", "metadata"),
    base_url: str = XMARKET_BASE_URL,
    progress: bool = True,
    *,
    card: Path | None = None,
    allow_unverified: bool = False,
) -> Fetched:
    """Download the XMarket files of ``domains`` x ``kinds`` into ``data_dir``; say what was done.

    Files already in place are kept, not counted as fetched, and checked like downloads: the
    card's size and sha256 when it has them, gzip integrity always (a truncated or random file
    is a DataError naming it). Offline or unreachable -> DataError telling the user to copy the
    files into ``data_dir`` instead. Without a sha256 in the card for every file, nothing is
    fetched unless ``allow_unverified`` (success must mean "verified"); the measured checksums
    are then printed for the card.
    """
    data_dir = Path(data_dir)
    domains = check_domains(domains)
    known = card_checksums(card)
    unverified = [xmarket_relpath(m, c, k) for m, c in domains for k in kinds
                  if known.get(xmarket_relpath(m, c, k), (None, None))[1] is None]
    if unverified and not allow_unverified:
        raise DataError(
            f"no sha256 to verify {', '.join(unverified)} against; add them to the card or pass "
            "--allow-unverified to download anyway (the measured checksums are printed)",
            card if card is not None else CARD_PATH,
        )
    out = Fetched()
    for market, category in domains:
        for kind in kinds:
            rel = xmarket_relpath(market, category, kind)
            dest = data_dir / rel
            size, sha = known.get(rel, (None, None))
            if sha is None:
                out.unverified.append(dest)
            if dest.is_file():
                _check_present(dest, size, sha)
                out.present.append(dest)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            url = base_url.rstrip("/") + "/" + rel
            measured_size, measured_sha = download(
                url, dest, size, sha, progress=progress, copy_hint=data_dir
            )
            if size is None or sha is None:
                tqdm.write(
                    f"{rel}: size={measured_size} sha256={measured_sha} "
                    f"(the card has no checksum for it; add these to datasets/xmarket.yaml)"
                )
            out.downloaded.append(dest)
    return out


def _check_present(dest: Path, size: int | None, sha: str | None) -> None:
    """A file already in place is used only if it passes what a download would: size, sha256, gzip."""
    if size is not None and dest.stat().st_size != size:
        raise DataError(f"size {dest.stat().st_size} differs from the card's {size}; delete it to download again", dest)
    if sha is not None and sha256_file(dest) != sha:
        raise DataError(f"sha256 differs from the card's {sha}; delete it to download again", dest)
    problem = gzip_problem(dest) if dest.suffix == ".gz" else None
    if problem is not None:
        raise DataError(f"already present but {problem}; delete it to download again", dest)


def download(
    url: str,
    dest: Path,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    copy_hint: Path | None = None,
) -> tuple[int, str]:
    """Fetch ``url`` to ``dest`` via ``dest.part`` (resumed with Range); returns (size, sha256).

    A checksum mismatch raises DataError and keeps the ``.part`` (delete it to start over).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "uie-bench"}
    if have:
        headers["Range"] = f"bytes={have}-"
    total: int | None = None
    opener = urllib.request.build_opener(_SameHostRedirects(verified=expected_sha256 is not None))
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part already holds every byte
            resp, total = None, have
        else:
            raise DataError(f"HTTP {exc.code} {exc.reason} for {url}", dest) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise _unreachable(url, exc, copy_hint or dest.parent) from None

    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            if status == 206:
                m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != have:
                    have = 0  # the server resumed elsewhere: start over
                    resp.close()
                    part.unlink(missing_ok=True)
                    return download(url, dest, expected_size, expected_sha256, progress, copy_hint)
                total = int(m.group(3)) if m.group(3) != "*" else None
            else:  # 200: full body (the server ignored Range, or no .part)
                have = 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            _stream(resp, part, have, total, url, dest, copy_hint, progress)

    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(f"incomplete download ({size} of {total} bytes); run the fetch again to resume", part)
    if expected_size is not None and size != expected_size:
        raise DataError(
            f"size {size} differs from the card's {expected_size}; kept for inspection, delete it to retry",
            part,
        )
    sha = sha256_file(part)
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise DataError(
            f"sha256 {sha} differs from the card's {expected_sha256}; kept for inspection, delete it to retry",
            part,
        )
    problem = gzip_problem(part) if dest.suffix == ".gz" else None
    if problem is not None:  # verified or not, only a whole gzip is renamed into place
        raise DataError(f"{problem}; kept for inspection, delete it to retry", part)
    os.replace(part, dest)
    return size, sha


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects within the host are followed; to another host only when the content has a checksum
    to verify against (and then it is said), else the download stops with a DataError."""

    def __init__(self, verified: bool):
        super().__init__()
        self.verified = verified

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlparse(req.full_url), urllib.parse.urlparse(newurl)
        if new.scheme not in ("http", "https") or (old.scheme == "https" and new.scheme != "https"):
            raise DataError(f"refusing a redirect from {req.full_url} to {newurl} (scheme change)")
        if new.hostname != old.hostname:
            if not self.verified:
                raise DataError(f"{req.full_url} redirects to another host ({new.hostname}); refusing to "
                                "follow it without a checksum to verify the file against")
            tqdm.write(f"note: {old.hostname} redirects to {new.hostname}; following (sha256 is verified)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _stream(resp, part: Path, have: int, total: int | None, url, dest, copy_hint, progress) -> None:
    with (
        open(part, "ab" if have else "wb") as f,
        tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=dest.name, disable=not progress,
        ) as bar,
    ):  # fmt: skip
        try:
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        except (TimeoutError, OSError) as exc:
            raise DataError(
                f"download interrupted ({exc}); run the fetch again to resume from {part.stat().st_size} bytes",
                part,
            ) from None


def _unreachable(url: str, exc: BaseException, copy_hint: Path) -> DataError:
    host = urllib.parse.urlparse(url).netloc
    reason = getattr(exc, "reason", exc)
    return DataError(
        f"cannot reach {host} ({reason}); copy the XMarket files to {copy_hint} instead "
        "(layout <market>/<Category>/<file>, or all files flat in that directory)"
    )
