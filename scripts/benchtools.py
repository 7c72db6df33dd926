"""Helpers the benchmark scripts share: peak memory per stage, the machine's fp32 GEMM rate, the
synthetic twin on disk, and RecBole's SASRec as the speed anchor every transformer-based method is compared with.

Scripts import this as ``benchtools`` (Python puts the script's own folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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


def gemm_peak(n: int = 1024, reps: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """GFLOP/s of a plain fp32 n x n GEMM, measured now with the same threads: the bound each row is read against
    (best of ``reps``, so a load spike lowers it less than it lowers a row). ``clock=time.process_time`` gives
    GFLOP per CPU-second (one thread: not stretched by other jobs), for rows measured in CPU seconds."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        a @ b
        best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e9


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


def recbole_sasrec_epoch(sequences: Iterable[np.ndarray], hidden: int = 64, layers: int = 2, heads: int = 2,
                         max_len: int = 50, batch: int = 2048, threads: int = 1, inner: int | None = None,
                         dropout: float = 0.5) -> tuple[int, float]:
    """(training samples, wall seconds) of one RecBole SASRec epoch: :func:`recbole_sasrec_timed`."""
    timed = recbole_sasrec_timed(sequences, hidden, layers, heads, max_len, batch, threads, inner, dropout)
    return timed.samples, timed.seconds


@dataclass(frozen=True)
class Timed:
    """Samples trained, wall seconds and CPU seconds (this process, all threads) of one timed piece of work.

    On a shared machine wall time stretches with the other jobs' load; CPU seconds much less, so
    samples per CPU-second is the steadier figure for a ratio (a 1-thread fit uses one core at most).
    """

    samples: int
    seconds: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)

    @property
    def per_cpu_s(self) -> float:
        return self.samples / max(self.cpu_s, 1e-9)


def recbole_sasrec_timed(sequences: Iterable[np.ndarray], hidden: int = 64, layers: int = 2, heads: int = 2,
                         max_len: int = 50, batch: int = 2048, threads: int = 1, inner: int | None = None,
                         dropout: float = 0.5) -> Timed:
    """Samples, wall and CPU seconds of one training epoch of RecBole 1.2.1's SASRec on ``sequences``.

    The anchor for "samples/s beside RecBole's SASRec at equal size" (issue 25): each element of
    ``sequences`` is one user's item ids in time order (a :class:`benchmark.data.model.Sequences`
    iterates so). They go to an atomic ``.inter`` file in a temp dir and through RecBole's own
    Config / Dataset / data_preparation (leave-one-out, so its training part is each user's
    sequence minus the last two items; one sample = one history -> next item prefix, RecBole's
    training unit), ``loss_type: CE``, then one ``Trainer._train_epoch`` is timed (data building
    is not). ``inner`` defaults to 4 x ``hidden`` (RecBole's 256 for 64); dropout is RecBole's 0.5.
    """
    from benchmark import compat

    compat.apply()
    SASRec = compat.recbole_sequential_models().SASRec  # noqa: N806 - RecBole's class; anomaly mode stays off
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # RecBole writes log_tensorboard/ in cwd
        name = "anchor"
        (Path(tmp) / name).mkdir()
        lines = ["user_id:token\titem_id:token\ttimestamp:float"]
        t = 0
        for u, seq in enumerate(sequences):
            for i in np.asarray(seq).tolist():
                lines.append(f"u{u}\ti{i}\t{t}")
                t += 1
        (Path(tmp) / name / f"{name}.inter").write_text("\n".join(lines) + "\n")
        config = Config(model="SASRec", dataset=name, config_dict={
            "data_path": tmp, "checkpoint_dir": tmp, "show_progress": False, "use_gpu": False, "device": "cpu",
            "seed": 0, "reproducibility": True, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": int(max_len), "train_neg_sample_args": None, "loss_type": "CE",
            "hidden_size": int(hidden), "inner_size": int(inner or 4 * hidden), "n_layers": int(layers),
            "n_heads": int(heads), "hidden_dropout_prob": float(dropout), "attn_dropout_prob": float(dropout),
            "train_batch_size": int(batch), "epochs": 1,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        })
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(threads)
            dataset = create_dataset(config)
            train_data, _, _ = data_preparation(config, dataset)
            model = SASRec(config, train_data.dataset)
            trainer = Trainer(config, model)
            torch.set_num_threads(threads)  # RecBole's init_seed may reset it
            t0, c0 = time.perf_counter(), cpu_seconds()
            trainer._train_epoch(train_data, 0, show_progress=False)
            return Timed(len(train_data.dataset), time.perf_counter() - t0, cpu_seconds() - c0)
        finally:
            torch.set_num_threads(before)


def recbole_sasrec_samples_per_s(sequences: Iterable[np.ndarray], hidden: int = 64, layers: int = 2, heads: int = 2,
                                 max_len: int = 50, batch: int = 2048, threads: int = 1,
                                 inner: int | None = None) -> float:
    """Training samples/s of RecBole 1.2.1's SASRec at these sizes on ``sequences`` (one timed
    epoch; see :func:`recbole_sasrec_epoch`). Divide a method's samples/s by this for its ratio."""
    n, seconds = recbole_sasrec_epoch(sequences, hidden, layers, heads, max_len, batch, threads, inner)
    return n / max(seconds, 1e-9)
