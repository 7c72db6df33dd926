"""What machine a result was computed on: CPU model, instruction sets, BLAS, library versions.

Trained methods are bit-identical only on the same machine type with the same seed; across CPU
types floating-point kernels (BLAS, oneDNN, gensim's loops) take different SIMD paths and the
last digits move (README, "Reproducibility"). Every result records this so the difference is
visible, never assumed away.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import time

try:
    import resource  # POSIX only
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

#: Instruction-set flags that select floating-point kernels (reported when the CPU has them).
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd")
_LIBS = ("numpy", "scipy", "torch", "gensim", "scikit-learn", "sentence-transformers", "transformers",
         "pandas", "pyarrow", "mlflow", "open_clip_torch", "faiss-cpu", "recbole", "ray")
#: The packages a report's provenance names (their releases can move a result; constraints.txt pins them).
REPORTED = ("torch", "transformers", "sentence-transformers", "open_clip_torch", "faiss-cpu", "gensim", "recbole",
            "mlflow", "numpy")


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [f for f in _FLAGS if f in flags]


def _blas() -> list[str]:
    """The BLAS/LAPACK libraries numpy actually loaded (threadpoolctl), else numpy's build config."""
    try:
        from threadpoolctl import threadpool_info

        found = [f"{i.get('internal_api')} {i.get('version') or ''} ({i.get('architecture') or '?'})".strip()
                 for i in threadpool_info() if i.get("user_api") == "blas"]
        if found:
            return sorted(set(found))
    except Exception:  # noqa: BLE001 - optional introspection
        pass
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts") or {}
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return [f"{blas.get('name', '?')} {blas.get('version', '')}".strip()]
    except Exception:  # noqa: BLE001
        return []


@functools.cache
def machine_info() -> dict:
    """A small JSON-able description of this machine and its numerical stack (cached per process)."""
    model, flags = _cpu()
    versions = {}
    for lib in _LIBS:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": model,
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "isa": flags,
        "blas": _blas(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": versions,
    }


def versions_line(machines: list[dict]) -> str:
    """``Packages: torch 2.13.0+cpu, transformers 5.25.0, ...`` over the runs' recorded machines.

    A package whose version differs between runs lists every version seen ("a | b"); one no run
    recorded shows "?" (a run made before it was recorded).
    """
    parts = []
    for lib in REPORTED:
        seen = sorted({str(m.get("libraries", {}).get(lib)) for m in machines if m.get("libraries", {}).get(lib)})
        parts.append(f"{lib} {' | '.join(seen) if seen else '?'}")
    return "Packages: " + ", ".join(parts) + "."


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux ``clear_refs`` 5); False where unsupported.

    So the peak read after a stage is that stage's, not the high-water mark of earlier runs in the
    same process (a local grid, a Ray worker).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (since the last :func:`reset_peak_rss`)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    if resource is None:
        return float("nan")
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class StageClock:
    """Wall seconds, CPU seconds (this process, all its threads) and peak RSS of consecutive stages.

    ``lap(name)`` closes the current stage and starts the next; ``stages`` maps name -> figures.
    The report's ``timing.csv`` is made of these (issue "Speed": say what each stage costs).
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._start()

    def _start(self) -> None:
        reset_peak_rss()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> dict[str, float]:
        stage = {"wall_s": round(time.perf_counter() - self._wall, 3),
                 "cpu_s": round(time.process_time() - self._cpu, 3), "peak_rss_mb": peak_rss_mb()}
        self.stages[name] = stage
        self._start()
        return stage
