"""Helpers the benchmark scripts share: peak memory per stage and the synthetic twin on disk.

Scripts import this as ``benchtools`` (Python puts the script's own folder on ``sys.path``).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def peak_rss_gib() -> float:
    """This process's peak resident set size since it started, in GiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20  # bytes on macOS, KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _vm_hwm_gib() -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        return None
    return None


class Stage:
    """Wall time, CPU time and peak RSS of one stage of work in this process.

    CPU seconds count every thread; on a shared machine they say what the stage costs when wall
    time is stretched by other jobs (an idle estimate is about CPU seconds / threads used).

    On Linux the kernel's high-water mark (VmHWM) is reset at the start (writing 5 to
    /proc/self/clear_refs), so the peak is the stage's own, counting what earlier stages left
    resident (as a one-process run holds it too). Elsewhere the peak is the process's so far
    (``per_stage`` False).
    """

    def __init__(self, name: str):
        self.name = name
        self.seconds = 0.0
        self.cpu_s = 0.0
        self.peak_gib = 0.0
        self.per_stage = False

    def __enter__(self) -> Stage:
        try:
            _CLEAR_REFS.write_text("5")
            self.per_stage = _vm_hwm_gib() is not None
        except OSError:
            self.per_stage = False
        self._t0, self._c0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu_s = cpu_seconds() - self._c0
        hwm = _vm_hwm_gib() if self.per_stage else None
        self.peak_gib = hwm if hwm is not None else peak_rss_gib()

    def as_dict(self) -> dict:
        return {"stage": self.name, "seconds": self.seconds, "cpu_s": self.cpu_s, "peak_rss_gib": self.peak_gib,
                "per_stage_peak": self.per_stage}


def twin_present(data_dir: Path, scale: str, seed: int) -> bool:
    from benchmark.data.sources import sim_dir

    return (sim_dir(data_dir, scale, seed) / "SIMULATED.json").is_file()


def ensure_twin(data_dir: Path, scale: str, seed: int, progress: bool = True) -> float | None:
    """Generate the ``xmarket-sim`` preset if absent (as the loader does on first use, under its
    lock, but without loading it); its wall seconds, or None when it was there."""
    from benchmark.data.simulator import generate
    from benchmark.data.sources import sim_dir
    from benchmark.fsutil import file_lock

    out = sim_dir(data_dir, scale, seed)
    if twin_present(data_dir, scale, seed):
        return None
    print(f"generating xmarket-sim {scale} (seed {seed}) in {out} ...", flush=True)
    t = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.parent / f".{out.name}.lock"):  # the same lock as benchmark.data.sources
        if not twin_present(data_dir, scale, seed):
            generate(out, scale=scale, seed=seed, progress=progress)
    return time.perf_counter() - t
