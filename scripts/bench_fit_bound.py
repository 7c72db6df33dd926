"""Where each trained fit of a suite sits against the fp32 compute bound (issue 25 items 1, 3 and 5).

Usage:
    PYTHONPATH=. python scripts/bench_fit_bound.py --suite xmarket-matching --data-dir data \
        --results-dir results [--methods unisrec,missrec] [--threads 1]

For each trained method of the suite (seed 0, the suite's scale) whose run is stored in
``--results-dir`` under the key this code gives it (so the probe runs the stored run's exact
config and data), the bench runs the method's own ``fit`` through the runner's inputs and records,
with a global optimizer-step hook (``torch.optim.optimizer.register_optimizer_step_post_hook``), the
CPU time at every optimizer step. It follows the fit into its last training stage (the stored
budget says how many steps the earlier ones take), times two validation intervals there, then
counts FLOPs (``torch.utils.flop_counter``: matrix products and convolutions only, so the bound is
a lower bound) over a third, and stops the fit.

Printed per method (last stage): CPU s and GFLOP per optimizer step, the step's GFLOP/s and its
share of a plain fp32 1024^3 GEMM measured in the same run (the machine's fp32 rate with the same
threads), the same for one validation, the projected fit CPU s (the fit as timed here up to the last
stage's second validation, then the stored steps and validations after it x s/step and s/validation) beside the stored fit's CPU s (a check
of the projection), and the fit's lower bound: its counted FLOPs at the GEMM rate. The total says
what the suite's fits cost at best on ``--cores`` cores, against the 45-minute target. Figures, not
a test; on a shared machine quote them with the load (CPU seconds are steadier than wall).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from benchtools import gemm_peak
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.flop_counter import FlopCounterMode

from benchmark import registry
from benchmark.grid.plan import plan, run_key
from benchmark.inputs import features_needed, prepare_inputs
from benchmark.plugin import RunContext
from methods.missrec.model import MISSRecNet
from methods.uniembedding import UniEmbedding

#: method -> (class, attribute) that switches its fit to the reference code (the "before" of a speed-up; not a
#: config key, so never part of a run key)
REFERENCE: dict[str, tuple[type, str]] = {
    "missrec": (MISSRecNet, "reference_fusion"), "missrec-transductive": (MISSRecNet, "reference_fusion"),
    "uniembedding": (UniEmbedding, "reference_path"), "uniembedding-text": (UniEmbedding, "reference_path"),
}


class _Enough(Exception):
    """Raised from the step hook once the probe has what it needs (ends the fit early)."""


@dataclass
class Probe:
    """Per-step CPU seconds and FLOP counts of one fit, from a global optimizer-step hook.

    ``before`` = optimizer steps of the earlier stages; ``v1``, ``v2`` = the last stage's first two
    validation points (its steps, as the stored curve gives them). Steps 1..v2+1 of the last stage are
    timed; FLOPs are counted from step v2+1 to v2+interval+2 (one more validation inside).
    """

    before: int
    v1: int
    v2: int
    cpu: list[float] = field(default_factory=list)
    optimizers: list[Any] = field(default_factory=list)  # the objects: an id could be reused after a stage's GC
    flops: list[int] = field(default_factory=list)
    counter: FlopCounterMode | None = None
    start: float = field(default_factory=time.process_time)

    @property
    def interval(self) -> int:
        return self.v2 - self.v1

    def __call__(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.cpu.append(time.process_time())
        self.optimizers.append(optimizer)
        local = len(self.cpu) - self.before  # the last stage's step number (1-based)
        if local == self.v2 + 1:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()
        if self.counter is not None:
            self.flops.append(self.counter.get_total_flops())
            if local == self.v2 + self.interval + 2:
                self.close()
                raise _Enough

    def close(self) -> None:
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.counter = None

    def complete(self) -> bool:
        return len(self.flops) == self.interval + 2

    def gaps(self) -> list[float]:
        """CPU s between the last stage's step k and k+1, k = 1..v2 (index k-1)."""
        s = self.before
        return [self.cpu[s + k] - self.cpu[s + k - 1] for k in range(1, self.v2 + 1)]

    def step_and_validation_s(self) -> tuple[float, float, bool]:
        """(mean CPU s of a step, CPU s of a validation, aligned).

        The mean over the two timed intervals' other gaps (whole epochs, so length-bucketed batches count
        as often as they run); a validation = the gap after a validation point minus that mean. aligned =
        the last stage begins with a new optimizer (when there are earlier stages) and both validation
        gaps exceed the median step (else the stored steps do not count this hook's steps one to one).
        """
        gaps = self.gaps()
        at_validation = {self.v1 - 1, self.v2 - 1}
        others = [g for i, g in enumerate(gaps) if i not in at_validation]
        step = statistics.fmean(others)
        validation = statistics.fmean(gaps[i] - step for i in at_validation)
        new_stage = self.before == 0 or self.optimizers[self.before] is not self.optimizers[self.before - 1]
        aligned = new_stage and min(gaps[i] for i in at_validation) > statistics.median(others)
        return step, max(validation, 0.0), aligned

    def head_cpu(self) -> float:
        """CPU seconds from the fit's start to the last stage's step v2+1 (earlier stages, set-up and the
        first two validations of the last stage, as they ran)."""
        return self.cpu[self.before + self.v2] - self.start

    def step_and_validation_flops(self) -> tuple[float, float]:
        deltas = [b - a for a, b in zip(self.flops, self.flops[1:], strict=False)]
        at_validation = self.interval - 1
        step = statistics.fmean(d for i, d in enumerate(deltas) if i != at_validation)
        return step, max(deltas[at_validation] - step, 0.0)


def stored_budget(results_dir: Path, suite: str, key: str) -> dict | None:
    path = results_dir / suite / key / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def last_stage(training: dict) -> tuple[int, dict]:
    """(steps before the last stage, the last stage) of a stored budget."""
    stages = training.get("stages") or [training]
    return sum(int(s["optimizer_steps"]) for s in stages[:-1]), stages[-1]


@contextlib.contextmanager
def probing(probe: Probe) -> Iterator[Probe]:
    """Run a fit under ``probe`` (a global optimizer-step hook); the fit ends quietly once the probe has its window."""
    handle = register_optimizer_step_post_hook(probe)
    try:
        yield probe
    except _Enough:
        pass
    finally:
        handle.remove()
        probe.close()


def probe_fit(run: Any, inputs: Any, before: int, v1: int, v2: int, threads: int) -> Probe:
    """The method's own fit on the runner's inputs, probed (the fit is cut short after the probe's window)."""
    method = registry.get_method(run.method)()
    ctx = RunContext(seed=run.seed, scale=run.scale, logger=logging.getLogger(f"bench.{run.method}"), workers=threads)
    ctx.seed_everything()
    probe = Probe(before=before, v1=v1, v2=v2)
    with probing(probe), ctx.threads():
        method.fit(inputs.train, inputs.features, run.method_config, ctx)
    return probe


def probe_row(run: Any, inputs: Any, before: int, stage: dict, curve: list, training: dict, peak: float,
              threads: int) -> tuple[str, float | None]:
    """One printed row (after the method name) and the fit's lower bound in CPU s (None when skipped)."""
    v1, v2 = int(curve[0][0]), int(curve[1][0])
    t0 = time.perf_counter()
    probe = probe_fit(run, inputs, before, v1, v2, threads)
    if not probe.complete():
        return f"skipped: the fit ended before the probe ({len(probe.cpu)} steps)", None
    step_s, valid_s, aligned = probe.step_and_validation_s()
    step_f, valid_f = probe.step_and_validation_flops()
    steps, validations = int(stage["optimizer_steps"]), len(curve)
    projected = probe.head_cpu() + (steps - v2 - 1) * step_s + (validations - 2) * valid_s
    bound = (steps * step_f + validations * valid_f) / (peak * 1e9)
    fit_cpu = float(training.get("fit_cpu_s") or 0.0)
    line = (f"{steps:>6} {step_s:>7.3f} {step_f / 1e9:>8.2f} {step_f / 1e9 / step_s:>6.1f} "
            f"{100 * step_f / 1e9 / step_s / peak:>5.0f}% {validations:>5} {valid_s:>7.2f} {valid_f / 1e9:>7.1f} "
            f"{100 * validations * valid_s / max(projected, 1e-9):>6.0f}% {projected:>7.0f} {fit_cpu:>8.0f} "
            f"{bound:>7.0f} {100 * bound / max(fit_cpu, 1e-9):>6.0f}%   (probe {time.perf_counter() - t0:.0f} s"
            f"{'' if aligned else '; NOT ALIGNED: no new optimizer at the stored stage boundary, or a validation gap below the median step'})")
    return line, bound


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="xmarket-matching")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--methods", default="", help="comma-separated (default: every trained method of the suite)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each fit (the runner's RUN_THREADS)")
    ap.add_argument("--cores", type=int, default=2, help="cores the suite's runs share (the total's divisor)")
    ap.add_argument("--target-min", type=float, default=45.0)
    ap.add_argument("--before", action="store_true",
                    help="also probe the code before issue 25's speed-ups where a method keeps it as a reference "
                         f"({', '.join(sorted(REFERENCE))}), alternating with the current code in this one process")
    ap.add_argument("--repeats", type=int, default=1, help="before/after pairs per method (with --before)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    runs = [r for r in plan(args.suite, methods=[m for m in args.methods.split(",") if m] or None) if r.seed == 0]
    first = runs[0]
    features = features_needed(first.features, {registry.get_method(r.method) for r in runs})
    inputs = prepare_inputs(first.dataset, first.split, features, args.data_dir, first.scale, progress=False)
    torch.set_num_threads(args.threads)
    peak = gemm_peak(clock=time.process_time)  # per CPU-second, as the rows: steadier than wall under load
    print(f"{args.suite} on {inputs.label}; load {os.getloadavg()[0]:.1f}; {args.threads} thread(s); "
          f"fp32 GEMM reference (1024^3, best of 5, per CPU-second): {peak:.1f} GFLOP/s")
    head = (f"{'method':<26} {'steps':>6} {'s/step':>7} {'GF/step':>8} {'GF/s':>6} {'of ref':>6} {'valid':>5} "
            f"{'s/valid':>7} {'GF/val':>7} {'valid %':>7} {'proj s':>7} {'stored s':>8} {'bound s':>7} {'bound %':>7}")
    print(head)
    totals: dict[str, tuple[float, float]] = {}  # method -> (stored fit CPU s, bound s)
    for run in runs:
        stored = stored_budget(args.results_dir, args.suite, run_key(run, inputs))
        training = (stored or {}).get("training") or {}
        if not training.get("optimizer_steps"):
            why = "not stored under this code's key" if stored is None else "untrained or no optimizer steps"
            print(f"{run.method:<26} skipped: {why}")
            continue
        before, stage = last_stage(training)
        curve = stage.get("curve") or []
        if len(curve) < 2:
            print(f"{run.method:<26} skipped: its last stage has no validation curve")
            continue
        switch = REFERENCE.get(run.method) if args.before else None
        variants = [(" (before)", True), (" (after)", False)] * args.repeats if switch else [("", False)]
        for label, reference in variants:
            if switch:
                setattr(*switch, reference)
            try:
                line, bound = probe_row(run, inputs, before, stage, curve, training, peak, args.threads)
            finally:
                if switch:
                    setattr(*switch, False)
            print(f"{run.method + label:<26} {line}", flush=True)
            if bound is not None and not reference:  # the current code's row (the last one, with --repeats)
                totals[run.method] = (float(training.get("fit_cpu_s") or 0.0), bound)
    total_stored, total_bound = (sum(v[i] for v in totals.values()) for i in (0, 1))
    print(f"total: stored fits {total_stored:.0f} CPU s = {total_stored / args.cores / 60:.1f} min on {args.cores} "
          f"cores; their counted FLOPs at the GEMM rate {total_bound:.0f} s = {total_bound / args.cores / 60:.1f} min "
          f"(the target: {args.target_min:.0f} min for the whole job, features included)")
    print("s/step, s/valid: CPU seconds of the last stage (mean step; a validation = its step gap minus the mean, "
          "so it holds any other epoch-boundary work too). "
          "GF: counted GFLOP (matrix products and convolutions). proj s: the fit as timed here to the last stage's "
          "second validation + the stored steps and validations after it x s/step and s/valid, beside the stored "
          "fit's CPU s. bound s: the fit's counted FLOPs at "
          "the GEMM rate (last stage only: a lower bound); bound %: its share of the stored fit's CPU s")


if __name__ == "__main__":
    main()
