"""Run every suite at ``--scale tiny`` into a temporary directory: the smoke test of a whole stack.

Used by ``tox -e latest`` (the newest releases, no constraints) and after regenerating
``constraints.txt``. Prints one line per suite (exit code, wall seconds) and the package
versions that matter; exits 1 if any suite failed. ``--keep DIR`` keeps the outputs there.

    python scripts/tiny_suites.py [--keep DIR] [--jobs N] [--suites a,b]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

#: (suite, extra arguments). Every suite names the twin explicitly (a data dir is given, so no
#: silent fallback); the ranking suite fits the embeddings it lacks first.
SUITES = (
    ("xmarket-matching", ["--dataset", "xmarket-sim"]),
    ("xmarket-ablation", ["--dataset", "xmarket-sim"]),
    ("unim2rec-c12", ["--dataset", "xmarket-sim"]),
    ("xmarket-ranking", ["--dataset", "xmarket-sim", "--fit-missing"]),
    ("xmarket-transfer", ["--dataset", "xmarket-sim"]),
)
VERSIONS = ("torch", "transformers", "sentence-transformers", "open_clip_torch", "faiss-cpu", "gensim", "recbole",
            "mlflow", "numpy", "ray")


def versions() -> str:
    out = []
    for name in VERSIONS:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} -")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write data, results and reports here (default: a temp dir)")
    parser.add_argument("--jobs", default="1", help="--jobs for every suite (default 1)")
    parser.add_argument("--data-dir", type=Path, help="the data directory (default: <keep or temp>/data); run keys "
                        "no longer depend on where the twin lies (twin version 2), so any data dir compares")
    parser.add_argument("--suites", help="comma-separated subset of: " + ", ".join(s for s, _ in SUITES))
    args = parser.parse_args(argv)
    chosen = set(args.suites.split(",")) if args.suites else {s for s, _ in SUITES}
    print(f"stack: {versions()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="uie-tiny-") as tmp:
        root = args.keep or Path(tmp)
        failed = []
        for suite, extra in SUITES:
            if suite not in chosen:
                continue
            cmd = [sys.executable, "-m", "benchmark", "run", "--suite", suite, "--scale", "tiny", "--no-progress",
                   "--jobs", args.jobs, "--data-dir", str(args.data_dir or root / "data"), "--results-dir", str(root / "results"),
                   "--reports-dir", str(root / "reports"), *extra]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            took = time.perf_counter() - t0
            last = (proc.stdout.strip().splitlines() or [""])[-1]
            print(f"{suite:<18} exit {proc.returncode}  {took:7.1f}s  {last}", flush=True)
            if proc.returncode != 0:
                failed.append(suite)
                print(proc.stderr[-3000:], file=sys.stderr)
    print(f"{len(chosen) - len(failed)} of {len(chosen)} suite(s) ran" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
