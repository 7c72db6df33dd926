"""One engine for every task's grid of runs: key, lock, compute, atomic folder, then tracking.

``engine`` (a keyed run: skip when finished, lock per key, write the folder atomically with
checksums, log it to MLflow after it is in place), ``failures`` (a failed run never stops the grid),
``ray_executor`` (local processes or a Ray cluster behind one ``ray_map``), ``jobs`` (how many runs
at once). Tasks (``benchmark.tasks``) sit on top and only say what a run computes.
"""
