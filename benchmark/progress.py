"""Progress reporting for long loops: a tqdm bar, or INFO log lines when bars are off."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["configure_logging", "progress_factory"]

log = logging.getLogger("benchmark.tasks.matching.runner")
_NOISY = ("mlflow", "alembic", "gensim", "urllib3", "sentence_transformers", "httpx", "PIL", "faiss")


def configure_logging(verbose: bool = False) -> None:
    """INFO lines (DEBUG with ``verbose``) on stderr, third-party chatter at WARNING.

    Called by the CLI and by every Ray worker (a worker starts without the driver's setup, and
    Ray forwards its stderr to the driver's terminal).
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _logged(iterable, desc: str, total: int | None):
    """Without progress bars, a long loop still reports its steps (epochs) at INFO level."""
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    every = 1 if not total or total <= 50 else max(total // 20, 1)
    for i, item in enumerate(iterable, start=1):
        yield item
        if i % every == 0 or i == total:
            log.info("%s %d/%s", desc or "step", i, total if total else "?")


def progress_factory(enabled: bool) -> Callable[..., Any]:
    """``ctx.progress`` for a run: tqdm bars, or (``--no-progress``) INFO lines per step."""

    def wrap(iterable, desc: str = "", total: int | None = None):
        if not enabled:
            return _logged(iterable, desc, total)
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)

    return wrap
