"""Wall time and peak memory of loading the XMarket twin and building the paper's split.

Usage:
    PYTHONPATH=. python scripts/bench_data_scale.py --scale paper --data-dir data --seed 0

Generates the ``xmarket-sim`` preset first if it is absent (not measured), then, in a fresh child
process so the peak RSS covers only the measured work, times a load of the raw files with the
loader's parse cache disabled and ``build_split`` (methods.md 0.2; leakage check included).
Prints both wall times, the peak RSS, whether the targets hold (load + split < 180 s, peak RSS
< 8 GiB; design.md "Scale": paper-scale data must load, split and evaluate on a 24 GiB machine),
and the dataset statistics beside XMarket's published figures. It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchtools import ensure_twin, peak_rss_gib

TARGET_SECONDS = 180.0
TARGET_RSS_GIB = 8.0


def measure(root: Path, seed: int, with_stats: bool) -> dict:
    """Fresh load (no parse cache) + split, in this process; returns the figures."""
    from benchmark.data.split import build_split
    from benchmark.data.xmarket import load_xmarket

    t0 = time.perf_counter()
    dataset = load_xmarket(root, cache_dir=None, progress=False, name="xmarket-sim")
    t1 = time.perf_counter()
    split = build_split(dataset, seed=seed)
    t2 = time.perf_counter()
    out = {
        "load_s": t1 - t0,
        "split_s": t2 - t1,
        "peak_rss_gib": peak_rss_gib(),
        "users": int(dataset.interactions.n_users),
        "items": len(dataset.items),
        "interactions": len(dataset.interactions),
        "synthetic": bool(dataset.synthetic),
        "manifest_hash": split.manifest_hash,
        "counts": split.meta["counts"],
    }
    if with_stats:
        from benchmark.data.stats import dataset_stats, format_stats

        out["stats_text"] = format_stats(dataset_stats(dataset, split))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="paper", help="xmarket-sim size preset (tiny, small, paper)")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("UIE_DATA_DIR", "data")),
        help="where xmarket-sim/<scale>-seed<seed> lives (default: $UIE_DATA_DIR or ./data)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the twin and of the split")
    ap.add_argument("--no-stats", action="store_true", help="skip the dataset statistics table")
    ap.add_argument("--measure-only", type=Path, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)

    if args.measure_only is not None:
        print(json.dumps(measure(args.measure_only, args.seed, not args.no_stats)))
        return 0

    from benchmark.data.sources import sim_dir

    root = sim_dir(args.data_dir, args.scale, args.seed)
    took = ensure_twin(args.data_dir, args.scale, args.seed)  # not part of the measured figures
    if took is not None:
        print(f"  generated in {took:.1f} s", flush=True)
    size = sum(p.stat().st_size for p in root.glob("**/ratings_*.txt.gz"))
    print(
        f"measuring a fresh load (parse cache disabled) + build_split of {root} ({size / 2**20:.1f} MiB ratings)"
    )

    cmd = [sys.executable, __file__, "--measure-only", str(root), "--seed", str(args.seed)]
    if args.no_stats:
        cmd.append("--no-stats")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        print(f"measurement failed (exit {proc.returncode})", file=sys.stderr)
        return proc.returncode
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    total = r["load_s"] + r["split_s"]
    c = r["counts"]
    label = " [SYNTHETIC]" if r["synthetic"] else ""
    print(f"\nxmarket-sim {args.scale}, seed {args.seed}{label}")
    print(f"  data            {r['users']:,} users, {r['items']:,} items, {r['interactions']:,} interactions")
    print(f"  split           {c['users_kept']:,} kept users, {c['train_interactions']:,} train interactions, "
          f"{c['overlapped_cases']:,} overlapped + {c['unseen_cases']:,} unseen cases, "
          f"{c['dropped_cases']:,} dropped; hash {r['manifest_hash'][:16]}")  # fmt: skip
    print(f"  load            {r['load_s']:8.1f} s")
    print(f"  build_split     {r['split_s']:8.1f} s")
    print(f"  load + split    {total:8.1f} s   target < {TARGET_SECONDS:.0f} s: "
          f"{'holds' if total < TARGET_SECONDS else 'FAILS'}")  # fmt: skip
    print(f"  peak RSS        {r['peak_rss_gib']:8.2f} GiB target < {TARGET_RSS_GIB:.0f} GiB: "
          f"{'holds' if r['peak_rss_gib'] < TARGET_RSS_GIB else 'FAILS'}")  # fmt: skip
    if "stats_text" in r:
        print("\n" + r["stats_text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
