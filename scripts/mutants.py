"""Plant known bugs in the modules that decide results and see which ones the tests catch.

Usage:
    python scripts/mutants.py                      # every mutant, on a copy of HEAD
    python scripts/mutants.py --only delong,early  # mutants whose name contains one of these
    python scripts/mutants.py --list               # the mutants and their test files, nothing run
    python scripts/mutants.py --source worktree    # copy the working tree (uncommitted edits) instead

mutmut over the whole suite does not fit a 2-core machine (the suite alone takes ~10 min), so the
mutants are hand-written: each is a file, an exact snippet of it, the snippet's bug, and the test
files that should catch it. The repository is copied to a temporary directory (``git archive`` of
HEAD by default: the working tree is never touched, other people edit it); for each mutant the
snippet is replaced there, only the listed test files run (the venv's python, ``PYTHONPATH`` = the
copy, ``pytest -x``), and the file is put back. A mutant is *killed* when the tests fail, *survived*
when they pass, ``stale`` when its snippet is no longer in the file exactly once (update the list).
Before the mutants, the listed test files run once unmutated: a mutant whose tests already fail
there is ``baseline-fails`` (it proves nothing). Exit status 0 always; the last line is the total.

Record the total, the commit and the survivors in README.md ("Mutation testing") after a full run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    mutated: str
    tests: tuple[str, ...]
    why: str = ""


EXACT_TESTS = ("tests/test_exact_ranks.py", "tests/test_exact_ranks_capped.py")
SPLIT_TESTS = ("tests/test_split.py",)
CLAIM_TESTS = ("tests/test_claims.py", "tests/test_claims_downstream.py")
TRAINING_TESTS = ("tests/test_early_stopping.py", "tests/test_training_budget.py")
RUNNER_TESTS = ("tests/test_runner.py", "tests/test_oracle.py")

MUTANTS: tuple[Mutant, ...] = (
    # -- evaluation/exact.py: the target's rank ------------------------------------------------------
    Mutant("exact-tie-larger-index-first", "benchmark/evaluation/exact.py",
           "count += np.bincount(row[same & (pos < t_pos)], minlength=len(cases))",
           "count += np.bincount(row[same & (pos > t_pos)], minlength=len(cases))",
           EXACT_TESTS, "identical rows: the larger index wins the tie"),
    Mutant("exact-query-stays-candidate", "benchmark/evaluation/exact.py",
           "query_pos = np.where(in_pool & (query[cases] != target[cases]), query_pos, -1)",
           "query_pos = np.where(in_pool & (query[cases] == target[cases]), query_pos, -1)",
           EXACT_TESTS, "the query item is not removed from the candidates"),
    Mutant("exact-no-normalisation", "benchmark/evaluation/exact.py",
           "np.divide(out, norms[:, None], out=out, where=norms[:, None] > 0)",
           "np.divide(out, norms[:, None], out=out, where=norms[:, None] < 0)",
           EXACT_TESTS, "raw inner products instead of cosines"),
    Mutant("exact-domain-pool-ignored", "benchmark/evaluation/exact.py",
           "        pools = _domain_pools(n_items, target, candidate_domain, item_domain)",
           "        pools = [(np.arange(len(query)), np.arange(n_items))]",
           EXACT_TESTS, "candidate_pool=domain ranks against every item"),
    # -- evaluation/metrics.py ------------------------------------------------------------------------
    Mutant("metrics-ndcg-log-base", "benchmark/evaluation/metrics.py",
           "return 1.0 / np.log2(ranks + 1.0)", "return 1.0 / np.log2(ranks + 2.0)",
           ("tests/test_metrics.py",), "NDCG discount shifted by one"),
    Mutant("metrics-cutoff-exclusive", "benchmark/evaluation/metrics.py",
           "hit = ranks <= self.k", "hit = ranks < self.k",
           ("tests/test_metrics.py",), "a target at rank K is a miss"),
    # -- evaluation/breakdown.py ----------------------------------------------------------------------
    Mutant("breakdown-shuffle-ranks-against-cases", "benchmark/evaluation/breakdown.py",
           "values = {metric.key: metric(ranks) for metric in metrics}",
           "values = {metric.key: metric(np.random.default_rng(0).permutation(ranks)) for metric in metrics}",
           ("tests/test_breakdown.py",), "per-case values no longer line up with the cases ('all' unchanged)"),
    Mutant("breakdown-head-tail-swapped", "benchmark/evaluation/breakdown.py",
           'popularity = {"head": head, "tail": ~head}', 'popularity = {"head": ~head, "tail": head}',
           ("tests/test_breakdown.py",), "Figure 6 groups swapped"),
    # -- evaluation/significance.py -------------------------------------------------------------------
    Mutant("significance-bonferroni-not-holm", "benchmark/evaluation/significance.py",
           "running = max(running, min(1.0, (m - i) * valid[name]))",
           "running = max(running, min(1.0, m * valid[name]))",
           ("tests/test_significance.py",), "Holm step-down replaced by plain Bonferroni"),
    Mutant("significance-null-not-centred", "benchmark/evaluation/significance.py",
           "null_means = _bootstrap_means(diff - mean_diff, n_boot, seed + 1)",
           "null_means = _bootstrap_means(diff, n_boot, seed + 1)",
           ("tests/test_significance.py",), "bootstrap p-value from an uncentred null"),
    Mutant("significance-ci-90-percent", "benchmark/evaluation/significance.py",
           "low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])",
           "low, high = np.quantile(means, [alpha, 1 - alpha])",
           ("tests/test_significance.py",), "a 90% interval labelled 95%"),
    # -- ranking/metrics.py: DeLong's test (Table 4) --------------------------------------------------
    Mutant("delong-covariance-sign-flipped", "benchmark/tasks/ranking/metrics.py",
           "var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(v10a) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(v01a)",
           "var = (s10[0, 0] + s10[1, 1] + 2 * s10[0, 1]) / len(v10a) + (s01[0, 0] + s01[1, 1] + 2 * s01[0, 1]) / len(v01a)",
           ("tests/test_ranking_metrics.py", "tests/test_significance.py", "tests/test_ctr_models.py"),
           "variance of the AUC difference ignores (adds) the pairing"),
    # -- reporting/claims.py --------------------------------------------------------------------------
    Mutant("claims-force-c5-verdict", "benchmark/reporting/claims.py",
           "ok = all(a.value(u, k) > b.value(u, k) for a in id_methods for b in seq_methods for u in USERS for k in METRICS)",
           "ok = True or all(a.value(u, k) > b.value(u, k) for a in id_methods for b in seq_methods for u in USERS for k in METRICS)",
           CLAIM_TESTS, "C5 holds whatever the numbers"),
    Mutant("claims-force-c1-verdict", "benchmark/reporting/claims.py",
           "        ok, why = _beats_all(uni, baselines)\n",
           "        ok, why = True, ''\n",
           CLAIM_TESTS, "C1 holds whatever the numbers"),
    Mutant("claims-c6-order-reversed", "benchmark/reporting/claims.py",
           "user_view_more = all(v[0] < v[1] for v in vals)",
           "user_view_more = all(v[0] > v[1] for v in vals)",
           CLAIM_TESTS, "C6: 'user view hurts more' read the wrong way round"),
    Mutant("claims-informational-dropped", "benchmark/reporting/paper_data.py",
           "return bool(kinds) and all(k in (PAPER, TWIN) for k in kinds)",
           "return True",
           CLAIM_TESTS, "verdicts on other datasets presented as confirming the papers"),
    # -- methods/shared/training.py: model selection --------------------------------------------------
    Mutant("training-early-stopping-reversed", "methods/shared/training.py",
           "improved = score > self.best + self.min_delta",
           "improved = score < self.best + self.min_delta",
           TRAINING_TESTS, "a worse validation score counts as a gain"),
    Mutant("training-never-restore-best", "methods/shared/training.py",
           "            net.load_state_dict(self.best_state)",
           "            pass",
           TRAINING_TESTS, "the last epoch's weights are kept, not the best one's"),
    Mutant("training-patience-off-by-one", "methods/shared/training.py",
           "if self.waited < self.patience:", "if self.waited <= self.patience:",
           TRAINING_TESTS, "one epoch more patience than configured"),
    Mutant("training-valid-ndcg-tie-rule", "methods/shared/training.py",
           "before = index[None, :] < tr[extra, None]", "before = index[None, :] > tr[extra, None]",
           TRAINING_TESTS, "validation ties decided by the larger index"),
    # -- runner.py: scoring in _compute ---------------------------------------------------------------
    Mutant("runner-swap-query-and-target", "benchmark/tasks/matching/runner.py",
           "emb, cases.query, cases.target,", "emb, cases.target, cases.query,",
           RUNNER_TESTS, "ranks the query from the target"),
    Mutant("runner-query-embeddings-dropped", "benchmark/tasks/matching/runner.py",
           "progress=progress, query_embeddings=query_emb, rank_cap=",
           "progress=progress, query_embeddings=None, rank_cap=",
           RUNNER_TESTS, "asymmetric scorers scored with their item side only"),
    Mutant("runner-domain-pool-ignored", "benchmark/tasks/matching/runner.py",
           'pool_by_domain = run.evaluation["candidate_pool"] == "domain"',
           "pool_by_domain = False",
           RUNNER_TESTS, "evaluation.candidate_pool=domain silently ignored"),
    # -- data/split.py, split_leakage.py: the leakage guard -------------------------------------------------------------
    Mutant("split-guard-not-run", "benchmark/data/split.py",
           "    check_leakage(split, od)\n    bar.update()\n",
           "    bar.update()\n",
           SPLIT_TESTS, "build_split no longer checks its own output"),
    Mutant("split-guard-heldout-skipped", "benchmark/data/split_leakage.py",
           "if len(ov) and not problems:", "if False:",
           SPLIT_TESTS, "a held-out interaction left in training goes unnoticed"),
    Mutant("split-guard-unseen-in-train", "benchmark/data/split_leakage.py",
           'note(np.isin(unseen, train.users), "unseen test users with training interactions", unseen)',
           'note(np.isin(unseen, train.users) & False, "unseen test users with training interactions", unseen)',
           SPLIT_TESTS, "an unseen test user with training rows goes unnoticed"),
)


def _copy_repo(source: str, dest: Path) -> str:
    """The repository (HEAD, or the working tree's tracked and untracked files) in ``dest``; its label."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    if source == "head":
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return commit
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return f"{commit}+working-tree"


def _pytest(copy: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """Run ``tests`` in ``copy``: ("pass" | "fail" | "timeout", seconds, first failure line)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    seconds = time.perf_counter() - t0
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out.stdout, flags=re.M)
    if out.returncode == 0:
        return "pass", seconds, ""
    if out.returncode == 5:
        return "fail", seconds, "no tests collected"
    return "fail", seconds, failed[0] if failed else (out.stdout + out.stderr).strip().splitlines()[-1][:160]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated substrings of mutant names")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--source", choices=("head", "worktree"), default="head",
                    help="copy HEAD (default) or the working tree as it is now")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the test files")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = ap.parse_args()

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    mutants = [m for m in MUTANTS if not wanted or any(w in m.name for w in wanted)]
    if args.list:
        for m in mutants:
            head = subprocess.run(["git", "show", f"HEAD:{m.path}"], cwd=ROOT, capture_output=True, text=True).stdout
            stale = "" if head.count(m.original) == 1 else "  [stale at HEAD]"
            print(f"{m.name:42s} {m.path:38s} {' '.join(m.tests)}{stale}\n{'':42s} {m.why}")
        print(f"{len(mutants)} mutants")
        return 0
    if not mutants:
        print(f"no mutant matches --only {args.only!r}")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="uie-mutants-"))
    copy = tmp / "repo"
    copy.mkdir()
    try:
        label = _copy_repo(args.source, copy)
        probe = subprocess.run([sys.executable, "-c", "import benchmark; print(benchmark.__file__)"], cwd=copy,
                               env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(copy)):
            print(f"the copy's benchmark package is not the one imported ({probe.stdout.strip()!r}); stopping")
            return 1
        print(f"mutation run {time.strftime('%Y-%m-%d %H:%M')} on {label} ({len(mutants)} mutants) in {copy}",
              flush=True)

        baseline: dict[str, str] = {}
        if not args.no_baseline:
            for test in sorted({t for m in mutants for t in m.tests}):
                if not (copy / test).is_file():
                    baseline[test] = "missing"
                    continue
                status, seconds, first = _pytest(copy, [test], args.timeout)
                baseline[test] = status
                print(f"  baseline {test}: {status} ({seconds:.0f} s){' ' + first if first else ''}", flush=True)

        outcome: dict[str, str] = {}
        for m in mutants:
            target = copy / m.path
            text = target.read_text() if target.is_file() else ""
            tests = [t for t in m.tests if (copy / t).is_file()]
            if text.count(m.original) != 1:
                outcome[m.name] = "stale"
                print(f"{m.name:42s} stale (snippet found {text.count(m.original)} times in {m.path})", flush=True)
                continue
            if not tests:
                outcome[m.name] = "no-tests"
                print(f"{m.name:42s} no-tests (none of {', '.join(m.tests)} exists)", flush=True)
                continue
            if any(baseline.get(t) not in (None, "pass") for t in tests):
                outcome[m.name] = "baseline-fails"
                print(f"{m.name:42s} baseline-fails ({', '.join(t for t in tests if baseline.get(t) != 'pass')})",
                      flush=True)
                continue
            target.write_text(text.replace(m.original, m.mutated))
            try:
                status, seconds, first = _pytest(copy, tests, args.timeout)
            finally:
                target.write_text(text)
            result = {"fail": "killed", "pass": "SURVIVED", "timeout": "timeout"}[status]
            outcome[m.name] = result
            print(f"{m.name:42s} {result:9s} {seconds:6.0f} s  {first}", flush=True)

        counts = {k: sum(v == k for v in outcome.values()) for k in dict.fromkeys(outcome.values())}
        survivors = [n for n, v in outcome.items() if v == "SURVIVED"]
        print(f"total {len(outcome)}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if survivors:
            print("survived: " + ", ".join(survivors))
        return 0
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
