"""Command line: ``python -m benchmark {run,report,sync,embeddings,list,data,card} ...``.

Every user error (bad input, bad config, unknown name) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from benchmark.config import check_seeds
from benchmark.data.cards import dataset_overrides, find_card
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.fsutil import cache_root, safe_name, unwritable_reason
from benchmark.grid.failures import Failure, summary
from benchmark.options import RunOptions
from benchmark.progress import configure_logging

EPILOG = """examples:
  python -m benchmark run --suite xmarket-matching                 # default: small synthetic twin if no real data
  python -m benchmark run --suite xmarket-matching --scale tiny --methods item2vec,clip --seeds 0,1
  python -m benchmark run --suite xmarket-matching --dataset xmarket-sim --data-dir /tmp/d   # the twin, explicitly
  python -m benchmark run --suite xmarket-matching --set item2vec.epochs=5 --set evaluation.candidate_pool=domain
  python -m benchmark report --suite xmarket-matching              # rebuild tables/figures from stored results
  python -m benchmark sync --results-dir results                  # log results MLflow lacks (after an outage)
  python -m benchmark run --suite xmarket-ranking --methods uae,pgg,uniembedding [--fit-missing]   # Table 4
  python -m benchmark list methods
  python -m benchmark embeddings export --suite xmarket-matching --method item2vec --out item2vec_s0
  python -m benchmark data generate xmarket-sim --scale small --out data/xmarket-sim/small-seed0
  python -m benchmark data stats --dataset xmarket-sim --scale small
  python -m benchmark data fetch xmarket --data-dir data/xmarket   # needs internet
"""


def _csv(text: str | None, flag: str = "--methods") -> list[str] | None:
    """A comma-separated option: None when not given; given but empty or blank is an error (never "all")."""
    if text is None:
        return None
    values = [t.strip() for t in text.split(",") if t.strip()]
    if not values:
        raise ConfigError(f"{flag} {text!r}: empty list; name at least one, or leave the option out for the suite's own")
    return values


def _seeds(text: str | None) -> list[int] | None:
    """``--seeds``: distinct integers in [0, MAX_SEED], checked here, before anything is loaded."""
    values = _csv(text, "--seeds")
    if values is None:
        return None
    try:
        seeds = [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers") from None
    return check_seeds(seeds, f"--seeds {text!r}")


def _default_data_dir() -> Path:
    return Path(os.environ.get("UIE_DATA_DIR", "data"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="uie-bench: rerun the published comparisons of universal item embeddings "
        "(UniEmbedding and its baselines) with one evaluator, every run logged to MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite (resumable: finished runs are skipped)",
                         description="Run every method x seed of a suite (matching, ranking or transfer: the "
                         "suite's task: key), store each result under results/<suite>/<run-key>/, log it to "
                         "MLflow, and write the suite's tables. Exit 0: every run finished or was skipped with "
                         "its reason; 1: some runs failed (the others are stored, the report marks the failed "
                         "ones, their tracebacks are under results/<suite>/.failed/, and rerunning retries only "
                         "them); 2: bad input or config, before any run.")
    run.add_argument("--suite", required=True, help="suite name (see `list suites`) or a suite YAML file")
    run.add_argument("--scale", choices=("tiny", "small", "paper"), help="size preset (default: the suite's)")
    run.add_argument("--methods", help="comma-separated subset of the suite's methods")
    run.add_argument("--allow-extra-methods", action="store_true",
                     help="let --methods name methods outside the suite (they run with their own defaults "
                     "and scale presets; the config is logged)")
    run.add_argument("--models", help="ranking suites only: comma-separated subset of dcnv2,finalmlp,din")
    run.add_argument("--fit-missing", action="store_true",
                     help="ranking suites only: first run the matching runs whose embeddings are missing")
    run.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    run.add_argument("--dataset", help="a dataset card in datasets/, recbole:<name>, csv:<file>, xmarket-sim "
                     "(the synthetic twin), or a path (default: the suite's); the card's defaults apply")
    run.add_argument("--domains", help="comma-separated domains to keep (XMarket: market/Category pairs)")
    run.add_argument("--data-dir", type=Path, default=None,
                     help="where datasets live and caches go (default: $UIE_DATA_DIR or ./data). Without "
                     "it, a suite on XMarket falls back to the synthetic twin; with it, missing files are an error")
    run.add_argument("--results-dir", type=Path, default=Path("results"), help="run outputs (default: results)")
    run.add_argument("--reports-dir", type=Path, default=Path("reports"), help="tables/figures (default: reports)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under results/)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. item2vec.epochs=5 or features.text_encoder=minilm")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="run the grid here, or as Ray tasks (RAY_ADDRESS selects the cluster)")
    run.add_argument("--jobs", default="auto", metavar="N|auto",
                     help="runs of the grid (transfer suites: tasks of conditions; ranking suites: cells) at once on this machine (N > 1 "
                     "through a local Ray), each with one torch thread, so keys and numbers are those of --jobs 1. "
                     "Default auto = min(cores, "
                     "runs still to compute); more than the cores is clamped with a warning; 0 or less is an error")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--log-embeddings", action="store_true",
                     help="also copy each run's item embeddings into MLflow (default: path and checksum only)")

    report = sub.add_parser("report", help="rebuild a suite's tables, figures and claim checks from stored results",
                            description="Reads results/<suite>/*/result.json only; never re-runs a model.")
    report.add_argument("--suite", required=True)
    report.add_argument("--results-dir", type=Path, default=Path("results"))
    report.add_argument("--reports-dir", type=Path, default=Path("reports"))
    report.add_argument("--dataset", help="report the runs on this dataset (default: the newest runs')")
    report.add_argument("--scale", choices=("tiny", "small", "paper"), help="report the runs at this size preset")

    emb = sub.add_parser("embeddings", help="export a finished run's stored item embeddings",
                         description="Item embeddings are a stored product of every run (result folder, "
                         "checksummed). Export writes <out>.npy, <out>.ids.tsv and <out>.parquet.")
    esub = emb.add_subparsers(dest="embeddings_command", required=True, metavar="ACTION")
    export = esub.add_parser("export", help="write a run's item embeddings for use elsewhere")
    export.add_argument("--suite", required=True)
    export.add_argument("--method", required=True)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--results-dir", type=Path, default=Path("results"))
    export.add_argument("--out", type=Path, required=True, help="output path stem (e.g. exports/item2vec_s0)")

    sync = sub.add_parser("sync", help="log every stored result that MLflow lacks (after a tracking outage)",
                          description="Idempotent: a run key is logged once; MLflow runs left RUNNING by "
                          "killed processes are closed as KILLED. Results being computed are skipped.")
    sync.add_argument("--suite", help="only this suite (default: every suite under --results-dir)")
    sync.add_argument("--results-dir", type=Path, default=Path("results"))
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under results/)")
    sync.add_argument("--log-embeddings", action="store_true", help="also copy item embeddings into MLflow")

    lister = sub.add_parser("list", help="list methods, suites, datasets or encoders")
    lister.add_argument("what", choices=("methods", "suites", "datasets", "encoders"))

    card = sub.add_parser("card", help="print a method's card (paper, what is faithful, every [proposal])")
    card.add_argument("method")

    data = sub.add_parser("data", help="fetch, generate or describe datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = dsub.add_parser("fetch", help="download the real XMarket files (resumable, verified)")
    fetch.add_argument("dataset", choices=("xmarket",))
    fetch.add_argument("--data-dir", type=Path, default=_default_data_dir() / "xmarket")
    fetch.add_argument("--domains", default="us/Books,us/Electronics,us/Cell_Phones_and_Accessories",
                       help="market/Category pairs, comma-separated")
    fetch.add_argument("--allow-unverified", action="store_true",
                       help="download files the dataset card has no sha256 for (printed for the card)")
    gen = dsub.add_parser("generate", help="write the synthetic XMarket twin in XMarket's raw formats")
    gen.add_argument("dataset", choices=("xmarket-sim",))
    gen.add_argument("--scale", choices=("tiny", "small", "paper"), default="small")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    stats = dsub.add_parser("stats", help="print dataset statistics beside XMarket's published ones")
    stats.add_argument("--dataset", required=True, help="a dataset card, xmarket, xmarket-sim, recbole:<name>, "
                       "csv:<file> or a path")
    stats.add_argument("--data-dir", type=Path, default=_default_data_dir())
    stats.add_argument("--scale", choices=("tiny", "small", "paper"), default="small")
    stats.add_argument("--domains", default=None)
    return parser


def _check_dir(path: Path, flag: str, write: bool = False) -> None:
    """A directory option names a directory (and, for outputs, one we can write) before any work starts."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a directory")
    problem = unwritable_reason(path) if write else None
    if problem is not None:
        raise ConfigError(f"{flag} {path}: cannot write there ({problem})")


def _options(args: argparse.Namespace, **extra: object) -> RunOptions:
    """The one options object every task reads (benchmark/options.py)."""
    return RunOptions(suite=args.suite, scale=args.scale, results_dir=args.results_dir,
                      reports_dir=args.reports_dir, **extra)  # type: ignore[arg-type]


def cmd_run(args: argparse.Namespace) -> int:
    # the task layers (torch, RecBole, Ray) load only for the commands that need them: `--help` stays fast
    from benchmark import dispatch
    from benchmark.grid.jobs import check_jobs

    jobs = check_jobs(args.jobs)  # before any work, for every kind of suite
    for path, flag in ((args.data_dir, "--data-dir"), (args.results_dir, "--results-dir"),
                       (args.reports_dir, "--reports-dir")):
        if path is not None:  # results and reports are written after every run: checked now, not then
            _check_dir(path, flag, write=flag != "--data-dir")
    named = args.data_dir is not None or bool(os.environ.get("UIE_DATA_DIR"))  # then never the twin
    opts = _options(
        args, methods=_csv(args.methods), seeds=_seeds(args.seeds), models=_csv(args.models, "--models"),
        overrides=(*dataset_overrides(args.dataset, args.domains), *args.overrides),
        allow_extra_methods=args.allow_extra_methods, data_dir=args.data_dir or _default_data_dir(),
        twin_fallback=not named, tracking_uri=args.tracking_uri, executor=args.executor, jobs=jobs,
        progress=not args.no_progress, log_embeddings=args.log_embeddings, fit_missing=args.fit_missing)
    outcome = dispatch.run(opts)
    print(outcome.line)
    return _failed_exit(outcome.failures)


def _failed_exit(failures: list[Failure]) -> int:
    """Exit code of a grid: 0, or 1 with one line naming what failed (the other runs are stored)."""
    if not failures:
        return 0
    print(f"error: {summary(failures)}; rerun the same command to retry only those", file=sys.stderr)
    return 1


def cmd_report(args: argparse.Namespace) -> None:
    from benchmark import dispatch

    if Path(args.suite).suffix not in {".yaml", ".yml"}:
        safe_name(args.suite, "suite name")
    _check_dir(args.reports_dir, "--reports-dir", write=True)
    card = find_card(args.dataset) if args.dataset else None
    dataset = card["name"] if card is not None else args.dataset
    print(dispatch.report(_options(args, dataset=dataset)))


def cmd_sync(args: argparse.Namespace) -> None:
    from benchmark.store.sync import sync_results
    from benchmark.store.tracking import Tracker, resolve_tracking_uri

    if not args.results_dir.is_dir():
        raise BenchmarkError(f"{args.results_dir}: no results directory")
    if args.suite:
        safe_name(args.suite, "suite name")
    tracker = Tracker(resolve_tracking_uri(args.results_dir, args.tracking_uri), args.results_dir)
    counts = sync_results(args.results_dir, tracker, args.suite, args.log_embeddings)
    print(f"sync to {tracker.uri}: {counts['logged']} logged, {counts['already']} already logged, "
          f"{counts['busy']} busy (being computed), {counts['no_tracking_info']} without tracking info "
          f"(made by an older version), {counts['unreadable']} unreadable (recomputed by `run`), "
          f"{counts['failed']} failed")
    if tracker.down:
        raise BenchmarkError(f"MLflow tracking unavailable ({tracker.down}); results are unchanged, run sync again later")


def cmd_embeddings(args: argparse.Namespace) -> None:
    from benchmark.store.embeddings import export_embeddings, load_embeddings

    safe_name(args.suite, "suite name")
    stored = load_embeddings(args.results_dir, args.suite, args.method, args.seed)
    paths = export_embeddings(stored, args.out)
    n, d = stored.vectors.shape
    synthetic = " (SYNTHETIC data)" if stored.dataset.get("synthetic") else ""
    print(f"exported {n} x {d} item embeddings of {args.method} seed {args.seed} from {stored.folder}{synthetic}:")
    for path in paths:
        print(f"  {path}")


def cmd_list(args: argparse.Namespace) -> None:
    from benchmark import registry

    if args.what == "methods":
        for name, cls in registry.methods().items():
            needs = ",".join(sorted(cls.requires)) + ("".join(f",[{u}]" for u in sorted(cls.uses)))
            print(f"{name:<30} {cls.summary()}  (needs: {needs})")
    elif args.what == "suites":
        import yaml

        for name, path in registry.suites().items():
            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
            print(f"{name:<30} {desc.splitlines()[0] if desc else ''}")
    elif args.what == "datasets":
        from benchmark.data.sources import list_datasets

        for name, summary in list_datasets():
            print(f"{name:<30} {summary}")
    else:
        from benchmark.features import list_encoders

        for name, modality, summary in list_encoders():
            print(f"{name:<30} {modality:<11} {summary}")


def cmd_card(args: argparse.Namespace) -> None:
    from benchmark import registry

    cls = registry.get_method(args.method)
    print(cls.card() or f"(no card for {args.method})")


def cmd_data(args: argparse.Namespace) -> None:
    if args.data_command == "fetch":
        from benchmark.data.fetch import fetch_xmarket
        from benchmark.data.xmarket import parse_domains

        fetched = fetch_xmarket(args.data_dir, parse_domains(args.domains), allow_unverified=args.allow_unverified)
        print(fetched.summary(args.data_dir))
    elif args.data_command == "generate":
        from benchmark.data.simulator import generate

        out = generate(args.out, scale=args.scale, seed=args.seed)
        print(f"wrote SYNTHETIC xmarket-sim ({args.scale}, seed {args.seed}) to {out}")
    else:
        from benchmark.data.cards import resolve_dataset
        from benchmark.data.sources import load_dataset
        from benchmark.data.split import cached_split
        from benchmark.data.stats import XMARKET_PUBLISHED, dataset_stats, format_stats

        cfg = resolve_dataset(args.dataset, args.domains)
        dataset = load_dataset(cfg["name"], args.data_dir, scale=args.scale, domains=cfg.get("domains"),
                               domain_field=cfg.get("domain_field"), time_field=cfg.get("time_field"))
        split = cached_split(dataset, cache_root(args.data_dir) / "splits")
        xmarket_like = dataset.name in ("xmarket", "xmarket-sim")  # published figures are XMarket's only
        print(format_stats(dataset_stats(dataset, split), reference=XMARKET_PUBLISHED if xmarket_like else None))
        print(f"Data: {dataset.meta['paper_data']['what']}")  # the line every report's header repeats


COMMANDS = {"run": cmd_run, "report": cmd_report, "sync": cmd_sync, "list": cmd_list, "card": cmd_card, "data": cmd_data,
            "embeddings": cmd_embeddings}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # retries: the runner says it once
    from benchmark import compat

    compat.apply()
    try:
        code = COMMANDS[args.command](args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # e.g. a read-only or full data/results directory: nothing half-written stays
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (finished runs are kept; rerun to resume)", file=sys.stderr)
        return 130
    return int(code or 0)
