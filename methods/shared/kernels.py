"""CPU settings for the embedding-table loops (MF, SGNS), the runs' thread budget, and the NaN fill.

``RunContext.seed_everything`` turns on ``torch.use_deterministic_algorithms``. On CPU the
embedding-gradient and sparse-coalesce kernels used here are already deterministic for a fixed
thread count; the flag only swaps in sort-based scatter kernels that made the SGNS/MF loops
3-8x slower on this machine. The loops' ops are small and memory-bound, so they run on one
intra-op thread: on the shared 2-core machine two threads were 2x (MF) to 8x (SGNS) slower.
Tests check bit-identical embeddings for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def standard_cpu_kernels(device: torch.device | str = "cpu") -> Iterator[None]:
    """One thread, deterministic-algorithms mode lifted; the caller's settings are restored afterwards.

    Only for a CPU ``device``: on a GPU the caller's settings are kept (deterministic mode included).
    """
    if torch.device(device).type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(threads)


@contextmanager
def unfilled_new_tensors() -> Iterator[None]:
    """Deterministic-algorithms mode kept, minus its NaN fill of every new uninitialised tensor.

    With ``torch.use_deterministic_algorithms(True)`` torch also writes NaN into the memory of
    each ``torch.empty`` (``torch.utils.deterministic.fill_uninitialized_memory``), a guard for
    code that reads memory before writing it. It changes no value of a correct computation and
    costs a pass over every new buffer (~5% of a UniEmbedding step). The caller's setting is
    restored afterwards.
    """
    before = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = before
