"""Keep faiss's C++ warnings (one per k-means run of OPQ training) out of the run's console.

faiss prints "WARNING clustering N points to K centroids" straight to file descriptor 2 for each
of the ~1600 k-means runs of OPQ training on small data; we capture them and keep a count.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class FaissLog:
    count: int = 0
    first: str = ""


@contextlib.contextmanager
def quiet_faiss() -> Iterator[FaissLog]:
    """Redirect fd 2 to a temporary file while faiss trains; report the number of warning lines."""
    log = FaissLog()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield log
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            noise = [ln for ln in lines if ln.startswith("WARNING clustering")]
            log.count = len(noise)
            log.first = noise[0] if noise else ""
            other = [ln for ln in lines if not ln.startswith("WARNING clustering")]
            if other:  # anything else faiss (or python) said goes back to the console
                sys.stderr.write("\n".join(other) + "\n")
