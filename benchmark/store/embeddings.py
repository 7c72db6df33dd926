"""Item embeddings as a stored product of every run: write, verify, load by (suite, method, seed), export.

A finished run keeps ``item_embeddings.npy`` (float32 [n_items, d], row = item index) and
``items.tsv`` (index, source id, domain) in its result folder, with their sha256 in
``result.json``. Downstream stages (the ranking task, transfer, a user's own system) read them
through :func:`load_embeddings` and never refit a method; a missing run, another manifest, a
wrong checksum or shape is a one-line error naming the run folder.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.model import Items
from benchmark.errors import BenchmarkError
from benchmark.fsutil import sha256_file
from benchmark.store.records import read_record_dict

EMBEDDINGS_FILE = "item_embeddings.npy"
ITEM_IDS_FILE = "items.tsv"
ID_FIELDS = ("index", "source_id", "domain")


def _ids_tsv(source_id: np.ndarray, domain: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(ID_FIELDS)
    for i, (sid, dom) in enumerate(zip(source_id, domain, strict=True)):
        writer.writerow((i, str(sid), dom))
    return buf.getvalue()


def write_embeddings(folder: Path, vectors: np.ndarray, items: Items) -> dict:
    """Write the vectors and their item ids into ``folder``; return the record's ``embeddings`` entry."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(items):
        raise ValueError(f"embeddings of shape {vectors.shape} do not match {len(items)} items")
    np.save(folder / EMBEDDINGS_FILE, vectors)
    domains = [items.domains[d] for d in items.domain]
    (folder / ITEM_IDS_FILE).write_text(_ids_tsv(items.source_id, domains))
    return {
        "file": EMBEDDINGS_FILE,
        "sha256": sha256_file(folder / EMBEDDINGS_FILE),
        "shape": [int(vectors.shape[0]), int(vectors.shape[1])],
        "dtype": "float32",
        "ids_file": ITEM_IDS_FILE,
        "ids_sha256": sha256_file(folder / ITEM_IDS_FILE),
    }


@dataclass(frozen=True)
class StoredEmbeddings:
    """One run's item embeddings, verified against the checksums in its result.json."""

    vectors: np.ndarray  # float32 [n_items, d]
    source_id: list[str]
    domain: list[str]
    folder: Path
    suite: str
    method: str
    display: str
    seed: int
    scale: str
    manifest_hash: str
    dataset: dict


def _read_ids(path: Path, folder: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows or tuple(rows[0]) != ID_FIELDS:
        raise BenchmarkError(f"{folder}: {ITEM_IDS_FILE} has no '{chr(9).join(ID_FIELDS)}' header")
    body = rows[1:]
    for line, row in enumerate(body, start=2):
        if len(row) != 3 or row[0] != str(line - 2):
            raise BenchmarkError(f"{folder}/{ITEM_IDS_FILE}:{line}: malformed item id row")
    return [r[1] for r in body], [r[2] for r in body]


def read_stored(folder: Path) -> StoredEmbeddings:
    """Load and verify the embeddings of one result folder."""
    folder = Path(folder)
    result = folder / "result.json"
    if folder.name.startswith("."):
        raise BenchmarkError(f"{folder}: an unfinished temporary folder, not a result")
    if not result.is_file():
        raise BenchmarkError(f"{folder}: no finished run here (no result.json)")
    record = read_record_dict(folder)  # one-line BenchmarkError naming result.json when unreadable
    info = record.get("embeddings") or {}
    if record.get("status") != "done" or not info:
        why = record.get("reason") or "it stored no embeddings (made before embeddings were stored?)"
        raise BenchmarkError(f"{folder}: run of {record.get('method')!r} has no item embeddings: {why}")
    vec_path, ids_path = folder / info["file"], folder / info["ids_file"]
    for path, key in ((vec_path, "sha256"), (ids_path, "ids_sha256")):
        if not path.is_file():
            raise BenchmarkError(f"{folder}: {path.name} is missing")
        if sha256_file(path) != info[key]:
            raise BenchmarkError(f"{folder}: {path.name} does not match its checksum in result.json (corrupt or altered)")
    try:
        vectors = np.load(vec_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"{folder}: {vec_path.name} is unreadable ({exc})") from None
    if vectors.dtype != np.float32 or list(vectors.shape) != list(info["shape"]):
        raise BenchmarkError(f"{folder}: {vec_path.name} has {vectors.dtype} {vectors.shape}, "
                             f"result.json says float32 {tuple(info['shape'])}")
    source_id, domain = _read_ids(ids_path, folder)
    if len(source_id) != vectors.shape[0]:
        raise BenchmarkError(f"{folder}: {len(source_id)} item ids for {vectors.shape[0]} embedding rows")
    return StoredEmbeddings(vectors=vectors, source_id=source_id, domain=domain, folder=folder,
                            suite=record["suite"], method=record["method"], display=record.get("display", ""),
                            seed=int(record["seed"]), scale=record.get("scale", ""),
                            manifest_hash=record.get("manifest_hash", ""), dataset=record.get("dataset", {}))


def load_embeddings(results_dir: Path, suite: str, method: str, seed: int = 0, *,
                    manifest_hash: str | None = None, scale: str | None = None,
                    n_items: int | None = None) -> StoredEmbeddings:
    """The item embeddings of (suite, method, seed) from the results store, without refitting.

    With ``manifest_hash`` (and ``scale``) given, only a run on that split (and preset) qualifies;
    otherwise the newest finished run of (suite, method, seed) is taken. ``n_items`` checks the
    row count. Every failure is one line naming the folder, for the CLI's exit 2.
    """
    base = Path(results_dir) / suite
    if not base.is_dir():
        raise BenchmarkError(f"{base}: no results for suite {suite!r} (run it first)")
    candidates = []
    for path in base.glob("*/result.json"):
        if path.parent.name.startswith("."):
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("method") != method or int(rec.get("seed", -1)) != int(seed):
            continue
        if scale is not None and rec.get("scale") != scale:
            continue
        candidates.append((path.stat().st_mtime, path.parent, rec))
    if not candidates:
        raise BenchmarkError(f"{base}: no run of method {method!r} with seed {seed}"
                             + (f" at scale {scale!r}" if scale else "")
                             + f"; run `python -m benchmark run --suite {suite} --methods {method} --seeds {seed}`")
    candidates.sort(key=lambda c: c[0])
    if manifest_hash is not None:
        same = [c for c in candidates if c[2].get("manifest_hash") == manifest_hash]
        if not same:
            _, folder, rec = candidates[-1]
            raise BenchmarkError(f"{folder}: run of {method!r} was made on split manifest "
                                 f"{rec.get('manifest_hash', '')[:12]}, not {manifest_hash[:12]}")
        candidates = same
    stored = read_stored(candidates[-1][1])
    if n_items is not None and stored.vectors.shape[0] != n_items:
        raise BenchmarkError(f"{stored.folder}: {stored.vectors.shape[0]} embedding rows, expected {n_items} items")
    return stored


def export_embeddings(stored: StoredEmbeddings, out: Path) -> list[Path]:
    """Write ``<out>.npy``, ``<out>.ids.tsv`` and ``<out>.parquet`` (id columns + a list column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    stem = out.with_suffix("") if out.suffix in {".npy", ".parquet", ".tsv"} else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".ids.tsv"),
             stem.with_name(stem.name + ".parquet")]
    np.save(paths[0], stored.vectors)
    paths[1].write_text(_ids_tsv(np.asarray(stored.source_id, dtype=object), stored.domain))
    d = stored.vectors.shape[1]
    flat = pa.array(stored.vectors.reshape(-1), type=pa.float32())
    table = pa.table({
        "index": pa.array(np.arange(len(stored.source_id), dtype=np.int64)),
        "source_id": pa.array(stored.source_id, type=pa.string()),
        "domain": pa.array(stored.domain, type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, d),
    })
    meta = {"suite": stored.suite, "method": stored.method, "seed": str(stored.seed),
            "manifest_hash": stored.manifest_hash, "synthetic": str(bool(stored.dataset.get("synthetic")))}
    table = table.replace_schema_metadata({f"uie_bench.{k}": v for k, v in meta.items()})
    pq.write_table(table, paths[2])
    return paths
