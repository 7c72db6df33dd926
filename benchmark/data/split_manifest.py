"""The split manifest on disk: its content hash and its ``.npz`` file (docs/protocol.md 0.2).

:func:`compute_manifest_hash` is the hash logged with every run and part of every run key;
:func:`save_split` / :func:`load_split` write and verify the file, so a truncated or altered
manifest is a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from benchmark.data.model import Histories, Sequences, Split, TestCases
from benchmark.errors import DataError
from benchmark.fsutil import atomic_write

SPLIT_VERSION: int = 2
"""Bump when the construction changes: it is part of the manifest hash and of the cache key.

v2: per-case histories (the next-item protocol) are part of the manifest."""

_TRAIN_FIELDS = ("users", "offsets", "items", "day", "rating")
_CASE_FIELDS = (
    "user",
    "query",
    "target",
    "overlapped",
    "target_head",
    "target_domain",
    "query_domain",
    "target_cold",
    "query_cold",
)
_DTYPES = {
    "train.users": np.int32,
    "train.offsets": np.int64,
    "train.items": np.int32,
    "train.day": np.int32,
    "train.rating": np.float32,
    "cases.user": np.int32,
    "cases.query": np.int32,
    "cases.target": np.int32,
    "cases.overlapped": np.bool_,
    "cases.target_head": np.bool_,
    "cases.target_domain": np.int16,
    "cases.query_domain": np.int16,
    "cases.target_cold": np.bool_,
    "cases.query_cold": np.bool_,
    "histories.offsets": np.int64,
    "histories.items": np.int32,
    "item_train_count": np.int64,
    "item_head": np.bool_,
}
_META_KEY = "__meta__"


def _named_arrays(
    train: Sequences, cases: TestCases, histories: Histories, item_train_count: np.ndarray, item_head: np.ndarray
) -> dict[str, np.ndarray]:
    out = {f"train.{f}": getattr(train, f) for f in _TRAIN_FIELDS}
    out.update({f"cases.{f}": getattr(cases, f) for f in _CASE_FIELDS})
    out["histories.offsets"] = histories.offsets
    out["histories.items"] = histories.items
    out["item_train_count"] = item_train_count
    out["item_head"] = item_head
    return out


def compute_manifest_hash(
    train: Sequences,
    cases: TestCases,
    histories: Histories,
    item_train_count: np.ndarray,
    item_head: np.ndarray,
    settings: dict,
) -> str:
    """sha256 over every array (canonical little-endian dtype), the settings and SPLIT_VERSION.

    Independent of machine byte order and of how the arrays were produced, so the same input and
    seed give the same hash everywhere; it is logged with every run.
    """
    h = hashlib.sha256()
    h.update(f"uie-bench split v{SPLIT_VERSION}\n".encode())
    h.update(json.dumps(settings, sort_keys=True).encode() + b"\n")
    for name, arr in _named_arrays(train, cases, histories, item_train_count, item_head).items():
        dtype = np.dtype(_DTYPES[name]).newbyteorder("<")
        a = np.ascontiguousarray(np.asarray(arr).astype(dtype, copy=False))
        h.update(f"{name}:{dtype.str}:{a.shape}\n".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def save_split(split: Split, path: Path) -> None:
    """Write the split as one uncompressed .npz (arrays + a JSON meta entry), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"split_version": SPLIT_VERSION, "manifest_hash": split.manifest_hash, "meta": split.meta}
    arrays = _named_arrays(split.train, split.cases, split.histories, split.item_train_count, split.item_head)
    arrays[_META_KEY] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_split(path: Path) -> Split:
    """Read a split written by :func:`save_split`; verify its version and content hash.

    A missing, truncated or altered file raises a one-line :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("split file not found", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(bytes(npz[_META_KEY]).decode())
            arrays = {name: npz[name] for name in _DTYPES}
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"split file is corrupt or truncated ({reason}); delete it to rebuild", path
        ) from None
    if header.get("split_version") != SPLIT_VERSION:
        raise DataError(
            f"split file has version {header.get('split_version')}, this code writes {SPLIT_VERSION}; rebuild it",
            path,
        )
    try:
        train = Sequences(**{f: arrays[f"train.{f}"] for f in _TRAIN_FIELDS})
        cases = TestCases(**{f: arrays[f"cases.{f}"] for f in _CASE_FIELDS})
        histories = Histories(offsets=arrays["histories.offsets"], items=arrays["histories.items"])
        meta = header["meta"]
        digest = compute_manifest_hash(
            train, cases, histories, arrays["item_train_count"], arrays["item_head"], meta["settings"]
        )
    except (KeyError, TypeError, ValueError, DataError) as exc:
        raise DataError(f"split file is malformed ({exc}); delete it to rebuild", path) from None
    if digest != header.get("manifest_hash"):
        raise DataError("split file content does not match its manifest hash; delete it to rebuild", path)
    return Split(
        train=train,
        cases=cases,
        histories=histories,
        item_train_count=arrays["item_train_count"],
        item_head=arrays["item_head"],
        manifest_hash=digest,
        meta=meta,
    )
