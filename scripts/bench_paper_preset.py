"""Wall time and peak memory of the paper preset, stage by stage (issue 15.3).

The paper preset is one command (README):

    python -m benchmark run --suite xmarket-matching --scale paper --dataset xmarket-sim \\
        --methods clip,item2vec,pgg,popularity,random

This script does what that command does, stage by stage, in one child process (as the command
holds everything in one process) and prints each stage's wall time, CPU time and peak RSS, the total and
whether the targets hold (<= 60 min, <= 16 GiB on a 2-core machine):

    generate   the twin, only if absent (otherwise listed as "present")
    load       the raw files (parse cache not used unless --warm)
    split      build_split + the train view (split cache not used unless --warm)
    features   text (MiniLM; the word-drop view only if a method uses it) then image (offline-descriptor), into a
               scratch feature cache deleted afterwards (the data dir's cache with --warm)
    <method>   fit + item-to-item evaluation (+ next-item for methods with a user encoder) + the
               result folder and MLflow run, as `run` does it; one stage per method
    report     report.md and tables from the stored results

A stage's peak RSS is the process's high-water mark reset at the stage's start (Linux), so it
counts what earlier stages left in memory. Usage (validate on small; `paper` takes the machine):

    nice -n 19 python scripts/bench_paper_preset.py --scale small --data-dir data \\
        --results-dir .runs/results --reports-dir .runs/reports

It prints figures; it is not a test. Runs already in --results-dir are reused and marked cached
(their time is not a measurement): use a fresh results directory for figures. The run keys are
those of the command above, so its later runs reuse what the bench computed (and vice versa).
The methods run one after another in one process, as `run --jobs 1` does; `run`'s default
(`--jobs auto`, 2 here) fits two at a time in Ray workers that each load the inputs again: less
wall time for the method stages, more memory than measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from benchtools import Stage, ensure_twin, twin_present

SUITE = "xmarket-matching"
PRESET_METHODS = "clip,item2vec,pgg,popularity,random"
TARGET_MINUTES = 60.0
TARGET_GIB = 16.0
_MARK = "@@stage "


def _plan(scale: str, methods: list[str], seed: int, overrides: tuple[str, ...]):
    from benchmark.data.cards import dataset_overrides
    from benchmark.grid.plan import plan

    return plan(SUITE, scale=scale, methods=methods, seeds=[seed],
                overrides=(*dataset_overrides("xmarket-sim", None), *overrides))


def _emit(stage: Stage, **extra: object) -> None:
    print(_MARK + json.dumps({**stage.as_dict(), **extra}), flush=True)


def measure(args: argparse.Namespace) -> int:
    """The child: every stage in this process, one JSON line per finished stage on stdout."""
    from benchmark.data.sources import _with_images, sim_dir
    from benchmark.data.split import build_split, cached_split, train_view
    from benchmark.data.xmarket import load_xmarket, parse_domains
    from benchmark.features import compute_features
    from benchmark.features.degrade import degrade_features
    from benchmark.grid.jobs import RUN_THREADS
    from benchmark.grid.plan import run_key
    from benchmark.inputs import Inputs, dataset_label
    from benchmark.reporting.matching import write_suite_reports
    from benchmark.reporting.results import load_records
    from benchmark.reporting.writers import report_dir
    from benchmark.store.tracking import Tracker, resolve_tracking_uri
    from benchmark.tasks.matching.runner import execute_run

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed bench still removes its scratch cache
    progress = not args.no_progress
    runs = _plan(args.scale, args.methods.split(","), args.seed, tuple(args.overrides))
    first = runs[0]
    root = sim_dir(args.data_dir, args.scale, args.seed)

    with Stage("generate") as st:
        took = ensure_twin(args.data_dir, args.scale, args.seed, progress)
    _emit(st, note="generated" if took is not None else "present (not generated)")

    with Stage("load") as st:
        doms = parse_domains(first.dataset.get("domains"))
        cache = root / ".cache" / "parsed" if args.warm else None
        dataset = load_xmarket(root, doms, cache_dir=cache, progress=progress, name="xmarket-sim")
        dataset = _with_images(dataset, root, progress)
    n = dataset.interactions
    _emit(st, note=f"{n.n_users:,} users, {len(dataset.items):,} items, {len(n):,} interactions")

    with Stage("split") as st:
        settings = {k: first.split[k] for k in ("test_user_frac", "overlapped_frac", "min_interactions")}
        if args.warm:
            split = cached_split(dataset, args.data_dir / ".cache" / "splits", seed=first.split["seed"], **settings)
        else:
            split = build_split(dataset, seed=first.split["seed"], **settings)
        train = train_view(dataset, split)
    _emit(st, note=f"{len(split.cases):,} test cases, {len(train.sequences.items):,} train interactions")

    from benchmark import registry
    from benchmark.inputs import features_needed

    fcfg = features_needed(first.features, {registry.get_method(r.method) for r in runs})  # as `run` does
    args.results_dir.mkdir(parents=True, exist_ok=True)
    scratch = None if args.warm else Path(tempfile.mkdtemp(prefix=".bench-features-", dir=args.results_dir))
    fcache = args.data_dir / ".cache" / "features" if args.warm else scratch
    common = {"cache_dir": fcache, "batch_size": fcfg["batch_size"], "progress": progress,
              "word_drop": float(fcfg.get("word_drop", 0.0)), "device": fcfg.get("device") or "cpu",
              "max_tokens": fcfg.get("max_tokens")}
    try:
        with Stage("features: text") as st:
            compute_features(dataset.items, text_encoder=fcfg["text_encoder"], image_encoder=None, **common)
        _emit(st, note=f"{fcfg['text_encoder']}, max_tokens {fcfg.get('max_tokens') or 'encoder default'}"
                       + (f", + word-drop view {common['word_drop']}" if common["word_drop"] else ", no word-drop view"))
        with Stage("features: image") as st:  # the text vectors come back from the cache just written
            features = compute_features(
                dataset.items, text_encoder=fcfg["text_encoder"],
                image_encoder=fcfg["image_encoder"] if dataset.items.has_images else None, **common)
            features = degrade_features(features, fcfg.get("degrade"))
        _emit(st, note=str(fcfg["image_encoder"] if dataset.items.has_images else "no images"))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    inputs = Inputs(dataset=dataset, split=split, train=train, features=features,
                    label=dataset_label(dataset, args.scale), banner=None)
    tracker = Tracker(resolve_tracking_uri(args.results_dir, None), args.results_dir)
    keys = set()
    for run in runs:
        cached = (args.results_dir / run.suite / run_key(run, inputs) / "result.json").exists()
        with Stage(run.method) as st:
            record = execute_run(run, inputs, args.results_dir, tracker, progress=progress, workers=RUN_THREADS)
        keys.add(record.run_key)
        t = record.timings
        note = ("CACHED: finished earlier, not measured" if cached else
                f"SKIPPED: {record.reason}" if record.status == "skipped" else
                f"fit {t.get('fit_s', 0):.1f}s, eval {t.get('eval_s', 0):.1f}s"
                + (f", next-item {t['next_item_s']:.1f}s" if "next_item_s" in t else "")
                + f", HR@50 {record.metrics.get('all', {}).get('HR@50', float('nan')):.2f}")
        _emit(st, note=note)

    with Stage("report") as st:
        write_suite_reports(SUITE, args.results_dir, args.reports_dir, keys=keys)
        out = report_dir(args.reports_dir, SUITE, load_records(args.results_dir, SUITE, keys))
    _emit(st, note=str(out / "report.md"))
    return 0


def _table(rows: list[dict], scale: str) -> str:
    lines = [f"{'stage':<18} {'wall':>10} {'CPU':>10} {'peak RSS':>10}  note", "-" * 88]
    for r in rows:
        lines.append(f"{r['stage']:<18} {r['seconds']:9.1f}s {r.get('cpu_s', 0):9.1f}s {r['peak_rss_gib']:8.2f}GiB  "
                     f"{r.get('note', '')}")
    total = sum(r["seconds"] for r in rows)
    cpu = sum(r.get("cpu_s", 0) for r in rows)
    peak = max(r["peak_rss_gib"] for r in rows)
    lines += ["-" * 88, f"{'total':<18} {total:9.1f}s {cpu:9.1f}s {peak:8.2f}GiB  "
              f"({total / 60:.1f} min wall; peak = the largest stage peak)"]
    if not all(r.get("per_stage_peak") for r in rows):
        lines.append("(no per-stage high-water mark on this OS: each peak is the process's peak so far)")
    ok_t, ok_m = total <= TARGET_MINUTES * 60, peak <= TARGET_GIB
    lines.append(f"targets at {scale} scale: <= {TARGET_MINUTES:.0f} min {'holds' if ok_t else 'FAILS'}, "
                 f"<= {TARGET_GIB:.0f} GiB {'holds' if ok_m else 'FAILS'}"
                 + ("" if scale == "paper" else " (the targets are set for --scale paper)"))
    if any("CACHED" in str(r.get("note", "")) for r in rows):
        lines.append("WARNING: some runs were finished earlier in this results directory; their times are not measured")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="paper", help="xmarket-sim size preset (default paper; validate on small)")
    ap.add_argument("--methods", default=PRESET_METHODS, help=f"methods of {SUITE} (default: {PRESET_METHODS})")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UIE_DATA_DIR", "data")))
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--reports-dir", type=Path, default=Path("reports"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the twin and of the runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override, as `run --set` (repeatable)")
    ap.add_argument("--warm", action="store_true",
                    help="use the data dir's parse, split and feature caches (what a rerun pays) instead of a cold run")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    if args.measure_only:
        return measure(args)

    from benchmark.errors import BenchmarkError

    try:  # a bad method list or --set fails here, before any work
        runs = _plan(args.scale, args.methods.split(","), args.seed, tuple(args.overrides))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    present = twin_present(args.data_dir, args.scale, args.seed)
    print(f"paper preset bench: suite {SUITE}, scale {args.scale}, methods {', '.join(r.method for r in runs)}; "
          f"twin {'present' if present else 'absent: generated first (timed as its own stage)'}; "
          f"{'warm caches' if args.warm else 'cold: no parse, split or feature cache'}", flush=True)
    cmd = [sys.executable, __file__, "--measure-only", *sys.argv[1:]] if argv is None else \
        [sys.executable, __file__, "--measure-only", *argv]
    rows: list[dict] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(_MARK):
                row = json.loads(line[len(_MARK):])
                rows.append(row)
                print(f"  done: {row['stage']:<16} {row['seconds']:8.1f}s wall {row['cpu_s']:8.1f}s CPU "
                      f"{row['peak_rss_gib']:6.2f} GiB  "
                      f"{row.get('note', '')}", flush=True)
            else:
                print(line, end="", flush=True)
    if proc.returncode != 0:
        print(f"measurement failed (exit {proc.returncode}) after {len(rows)} stage(s)", file=sys.stderr)
        if rows:
            print(_table(rows, args.scale))
        return proc.returncode or 1
    print("\n" + _table(rows, args.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
