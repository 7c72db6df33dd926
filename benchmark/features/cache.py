"""On-disk cache of frozen item features.

Features are computed once per (encoder id, weights hash, items fingerprint) and stored as
float32 ``.npy`` (+ a bool mask for images) with a small JSON record. Files are written to a
temporary name and moved into place with ``os.replace``, so a reader never sees half a file;
the JSON record (written last) holds the sha256 of every array file, checked on each read, so a
corrupt, altered or unverifiable entry is named in a warning and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from benchmark.fsutil import atomic_write, cache_entry_refusal, sha256_file

log = logging.getLogger(__name__)

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) for the process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(path)
    return _FILE_HASHES[key]


def hash_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """One hash over several weight files: their names (relative to ``root``) and contents."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        name = str(p.relative_to(root)) if root is not None else p.name
        h.update(f"{name}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def fingerprint_texts(texts: Sequence[str]) -> str:
    """sha256 over the exact prompts, in item order."""
    h = hashlib.sha256(f"texts:{len(texts)}\n".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def fingerprint_images(paths: Sequence[str]) -> str:
    """sha256 over the images' contents in item order ('' = no image, '-' = file missing or unreadable).

    Keyed on content, not path and size: a replaced or altered image file changes the key.
    """
    h = hashlib.sha256(f"images-content:{len(paths)}\n".encode())
    for p in paths:
        digest = ""
        if p:
            try:
                digest = file_sha256(p)
            except OSError:
                digest = "-"
        h.update(f"{digest}\n".encode())
    return h.hexdigest()


def cache_key(modality: str, encoder_id: str, weights_hash: str, fingerprint: str) -> str:
    payload = json.dumps([modality, encoder_id, weights_hash, fingerprint])
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


class FeatureCache:
    """A directory of cached feature matrices, one entry per cache key."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def paths(self, modality: str, key: str) -> tuple[Path, Path, Path]:
        stem = self.root / f"{modality}-{key}"
        return stem.with_suffix(".npy"), stem.with_suffix(".mask.npy"), stem.with_suffix(".json")

    def load(
        self, modality: str, key: str, n: int, dim: int, with_mask: bool
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The cached (vectors, mask) or None on a miss; a bad entry is logged and ignored."""
        vec_path, mask_path, meta_path = self.paths(modality, key)
        if not meta_path.exists():
            return None
        try:
            for path in (meta_path, vec_path, *((mask_path,) if with_mask else ())):
                refusal = cache_entry_refusal(path, self.root)
                if refusal is not None:
                    raise ValueError(f"{path.name}: {refusal}")
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key:
                raise ValueError("key mismatch")
            sums = meta.get("sha256") or {}
            if not sums.get("vectors") or (with_mask and not sums.get("mask")):
                raise ValueError("no content checksum recorded (older cache format)")
            # unmemoised (not file_sha256): a cache file's bytes are re-read every time they are trusted
            if sha256_file(vec_path) != sums["vectors"] or (with_mask and sha256_file(mask_path) != sums["mask"]):
                raise ValueError("content does not match its checksum (corrupt or altered)")
            vectors = np.load(vec_path, allow_pickle=False)
            if vectors.dtype != np.float32 or vectors.shape != (n, dim):
                raise ValueError(f"vectors have {vectors.dtype} {vectors.shape}, expected float32 {(n, dim)}")
            if not np.isfinite(vectors).all():
                raise ValueError("non-finite values")
            mask = None
            if with_mask:
                mask = np.load(mask_path, allow_pickle=False)
                if mask.dtype != np.bool_ or mask.shape != (n,):
                    raise ValueError(f"mask has {mask.dtype} {mask.shape}, expected bool ({n},)")
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("feature cache entry %s is unreadable or corrupt (%s: %s); recomputing", vec_path, type(e).__name__, e)
            return None
        return vectors, mask

    def save(self, modality: str, key: str, vectors: np.ndarray, mask: np.ndarray | None, meta: dict) -> Path:
        """Write one entry atomically (vectors and mask first, the JSON record last)."""
        self.root.mkdir(parents=True, exist_ok=True)
        vec_path, mask_path, meta_path = self.paths(modality, key)
        atomic_write(vec_path, lambda f: np.save(f, np.ascontiguousarray(vectors, dtype=np.float32)))
        if mask is not None:
            atomic_write(mask_path, lambda f: np.save(f, np.ascontiguousarray(mask, dtype=np.bool_)))
        sums = {"vectors": sha256_file(vec_path)}
        if mask is not None:
            sums["mask"] = sha256_file(mask_path)
        record = {
            "sha256": sums,
            "key": key,
            "modality": modality,
            "n": int(len(vectors)),
            "dim": int(vectors.shape[1]),
            **meta,
        }
        atomic_write(meta_path, lambda f: f.write(json.dumps(record, indent=1, sort_keys=True).encode()))
        return vec_path
