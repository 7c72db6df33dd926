"""The ranking grid as Ray tasks (``run --jobs N`` / ``--executor ray``): one task per pending cell, heavy first.

The same executor as the matching suite and the transfer grid (``benchmark/ray_executor.py``).
A task rebuilds what its cell needs from the data-dir caches (the split through
``prepare_inputs``, which a reused Ray worker keeps in memory, and the verified CTR cache) and
reads the embeddings from the very matching-run folder the driver chose, checking their
checksum; a CTR dataset other than the driver's is an error, never a silently different cell.
Each cell trains with one torch thread (``execute_cell``), so its run key and metrics are those
of ``--jobs 1``, and it stores its folder before it logs to MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.embeddings import StoredEmbeddings

#: Relative cost of a cell by ranking model, from the small twin's 36-cell run (fit seconds summed
#: over 12 cells each: DIN 1040, DCNv2 484, FinalMLP 286). Within a model, wider embeddings first.
MODEL_COST = {"din": 3, "dcnv2": 2, "finalmlp": 1}


def heavy_first(cells: list[tuple[Any, StoredEmbeddings | None]]) -> list[tuple[Any, StoredEmbeddings | None]]:
    """Order (cell, embeddings) pairs for submission: costly models, then wide embeddings, first (stable)."""
    def cost(pair: tuple[Any, StoredEmbeddings | None]) -> tuple[int, int]:
        cell, stored = pair
        return (-MODEL_COST.get(cell.model, 0), -(0 if stored is None else int(stored.vectors.shape[1])))

    return sorted(cells, key=cost)


def _remote_cell(job: dict[str, Any], cell: dict[str, Any], emb_folder: str | None, emb_sha: str) -> str:
    """A Ray task: rebuild the inputs and CTR data from the caches, train one cell, return its line."""
    from benchmark.embeddings import read_stored
    from benchmark.errors import BenchmarkError
    from benchmark.inputs import prepare_inputs
    from benchmark.progress import configure_logging, progress_factory
    from benchmark.ranking.suite import (
        NO_FEATURES,
        RankingCell,
        cell_line,
        ctr_data,
        embeddings_sha,
        execute_cell,
    )
    from benchmark.tracking import Tracker

    configure_logging()
    data_dir, results_dir = Path(job["data_dir"]), Path(job["results_dir"])
    rcell = RankingCell(**cell)
    inputs = prepare_inputs(job["dataset"], job["split"], NO_FEATURES, data_dir, job["scale"], progress=False)
    ctr = ctr_data(inputs, data_dir, rcell.data)
    if ctr.hash != job["ctr_hash"]:
        raise BenchmarkError(f"ranking task: CTR data {ctr.hash} in this worker, {job['ctr_hash']} in the driver "
                             f"(is {data_dir} shared?)")
    stored = None
    if emb_folder is not None:
        stored = read_stored(Path(emb_folder))  # verifies the files against their checksums
        if embeddings_sha(stored) != emb_sha or stored.vectors.shape[0] != job["n_items"]:
            raise BenchmarkError(f"{emb_folder}: not the embeddings the driver chose ({emb_sha[:12]}, "
                                 f"{job['n_items']} rows)")
    tracker = Tracker(job["tracking_uri"], results_dir)
    t0 = time.perf_counter()
    record = execute_cell(job["suite"], job["scale"], rcell, ctr, stored, inputs, results_dir, tracker,
                          progress_factory(False))
    return cell_line(rcell, record, time.perf_counter() - t0)


def _guarded_cell(job: dict[str, Any], cell: dict[str, Any], key: str, emb_folder: str | None, emb_sha: str) -> str:
    """A Ray task at the run boundary: the cell's line, or its FAILED line (the failure recorded)."""
    from benchmark.failures import Failure, guarded
    from benchmark.ranking.suite import RankingCell, cell_label

    out = guarded(Path(job["results_dir"]) / job["suite"], key, cell_label(RankingCell(**cell)),
                  lambda: _remote_cell(job, cell, emb_folder, emb_sha))
    return f"  {out.label}: FAILED - {out.reason} (traceback: {out.log})" if isinstance(out, Failure) else out


def cell_key(suite: str, cell: Any, ctr_hash: str, stored: StoredEmbeddings | None) -> str:
    from benchmark.ranking.suite import _cell_key, embeddings_sha

    return _cell_key(suite, cell, ctr_hash, embeddings_sha(stored))


def run_cells_on_ray(job: dict[str, Any], cells: list[tuple[Any, StoredEmbeddings | None]],
                     local_cpus: int | None, echo: Callable[[str], None]) -> None:
    """Submit each (cell, embeddings) as a Ray task, heavy first, and echo each line as its task finishes.

    ``local_cpus`` starts a private local Ray with that many CPUs; None uses RAY_ADDRESS (a cluster).
    """
    import ray

    from benchmark.failures import record_failure
    from benchmark.ranking.suite import cell_label, embeddings_sha
    from benchmark.ray_executor import remote_reason, start_ray

    t0 = time.perf_counter()
    start_ray(None, local_cpus)
    remote = ray.remote(num_cpus=1, max_retries=1)(_guarded_cell)
    waiting, what = [], {}
    for cell, stored in heavy_first(cells):
        folder = None if stored is None else str(Path(stored.folder).resolve())
        key = cell_key(job["suite"], cell, job["ctr_hash"], stored)
        ref = remote.remote(job, cell.as_dict(), key, folder, embeddings_sha(stored))
        waiting.append(ref)
        what[ref] = (key, cell_label(cell))
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        try:
            echo(ray.get(done[0]))
        except Exception as exc:  # noqa: BLE001 - a task that died (killed worker, out of memory)
            key, label = what[done[0]]
            f = record_failure(Path(job["results_dir"]) / job["suite"], key, label, reason=remote_reason(exc),
                               trace=str(exc))
            echo(f"  {f.label}: FAILED - {f.reason} (traceback: {f.log})")
    echo(f"  ({len(cells)} cell(s) as Ray tasks, {time.perf_counter() - t0:.1f}s "
         f"with {local_cpus if local_cpus else 'a Ray cluster of'} parallel job(s))")
