"""The ranking grid as Ray tasks (``run --jobs N`` / ``--executor ray``): one task per pending cell, heavy first.

The same executor as the matching suite and the transfer grid (``benchmark/grid/ray_executor.py``).
A task rebuilds what its cell needs from the data-dir caches (the split through
``prepare_inputs``, which a reused Ray worker keeps in memory, and the verified CTR cache) and
reads the embeddings from the very matching-run folder the driver chose, checking their
checksum; a CTR dataset other than the driver's is an error, never a silently different cell.
Each cell trains with one torch thread (``cells.execute_cell``), so its run key and metrics are
those of ``--jobs 1``, and it stores its folder before it logs to MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.grid.failures import failed_line, record_failure
from benchmark.grid.ray_executor import ray_map, remote_reason
from benchmark.store.embeddings import StoredEmbeddings
from benchmark.tasks.ranking.cells import cell_label, embeddings_sha, key_of, remote_cell

#: Relative cost of a cell by ranking model, from the small twin's 36-cell run (fit seconds summed
#: over 12 cells each: DIN 1040, DCNv2 484, FinalMLP 286). Within a model, wider embeddings first.
MODEL_COST = {"din": 3, "dcnv2": 2, "finalmlp": 1}


def heavy_first(cells: list[tuple[Any, StoredEmbeddings | None]]) -> list[tuple[Any, StoredEmbeddings | None]]:
    """Order (cell, embeddings) pairs for submission: costly models, then wide embeddings, first (stable)."""
    def cost(pair: tuple[Any, StoredEmbeddings | None]) -> tuple[int, int]:
        cell, stored = pair
        return (-MODEL_COST.get(cell.model, 0), -(0 if stored is None else int(stored.vectors.shape[1])))

    return sorted(cells, key=cost)


def run_cells_on_ray(job: dict[str, Any], cells: list[tuple[Any, StoredEmbeddings | None]],
                     local_cpus: int | None, echo: Callable[[str], None]) -> None:
    """Each (cell, embeddings) as a Ray task, heavy first; echo each line as its task finishes.

    ``local_cpus`` starts a private local Ray with that many CPUs; None uses RAY_ADDRESS (a cluster).
    A task that died is recorded as that cell's failure; the others go on.
    """
    t0 = time.perf_counter()
    order = heavy_first(cells)
    keys = [key_of(job["suite"], cell, job["ctr_hash"], embeddings_sha(stored)) for cell, stored in order]
    calls = [(job, cell.as_dict(), key, None if stored is None else str(Path(stored.folder).resolve()),
              embeddings_sha(stored)) for (cell, stored), key in zip(order, keys, strict=True)]

    def done(i: int, value: Any) -> None:
        if isinstance(value, BaseException):  # the worker died: record it here
            value = failed_line(record_failure(Path(job["results_dir"]) / job["suite"], keys[i],
                                               cell_label(order[i][0]), reason=remote_reason(value), trace=str(value)))
        echo(value)

    ray_map(remote_cell, calls, local_cpus=local_cpus, on_done=done)
    echo(f"  ({len(cells)} cell(s) as Ray tasks, {time.perf_counter() - t0:.1f}s "
         f"with {local_cpus if local_cpus else 'a Ray cluster of'} parallel job(s))")
