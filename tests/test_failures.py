"""A failing run never stops the grid: caught at the run boundary, recorded, reported, retried.

The failing method is a real third-party plugin: a package with its own entry point
(``benchmark.methods``) on PYTHONPATH, so a Ray worker finds it exactly as it would find an
installed plugin. It raises in ``fit`` unless ``UIE_TEST_EXPLODE`` is ``0``.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from benchmark import registry
from benchmark.cli import main
from benchmark.grid.failures import read_failures
from benchmark.tasks.matching.runner import run_suite

PLUGIN = '''
from __future__ import annotations

import os

import numpy as np

from benchmark.plugin import Method


class Exploding(Method):
    """Exploding: raises inside fit (a method bug, for the run-boundary tests)."""

    name = "exploding"
    display_name = "Exploding"
    requires = frozenset({"ids"})

    def fit(self, train, features, cfg, ctx):
        if os.environ.get("UIE_TEST_EXPLODE", "1") != "0":
            raise RuntimeError("planted failure in fit\\nsecond line of the message")
        self._emb = ctx.rng(0).standard_normal((train.n_items, 4)).astype(np.float32)

    def item_embeddings(self):
        return self._emb
'''


@pytest.fixture
def exploding_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install the plugin on sys.path and PYTHONPATH (for Ray workers); a fresh Ray picks it up."""
    root = tmp_path / "plugin"
    (root / "uie_exploding").mkdir(parents=True)
    (root / "uie_exploding" / "__init__.py").write_text(PLUGIN)
    dist = root / "uie_exploding-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: uie-exploding\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [benchmark.methods]
        exploding = uie_exploding:Exploding
        """))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("UIE_TEST_EXPLODE", "1")
    registry.methods.cache_clear()
    _shutdown_ray()
    yield root
    _shutdown_ray()
    registry.methods.cache_clear()


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_method_is_recorded_and_the_grid_goes_on(exploding_plugin, tiny_data_dir: Path, tmp_path: Path,
                                                            jobs: int, capsys, monkeypatch) -> None:
    results, reports = tmp_path / "results", tmp_path / "reports"
    argv = ["run", "--suite", "xmarket-matching", "--scale", "tiny", "--methods", "exploding,random",
            "--allow-extra-methods", "--seeds", "0", "--dataset", "xmarket-sim", "--data-dir", str(tiny_data_dir), "--results-dir", str(results),
            "--reports-dir", str(reports), "--jobs", str(jobs), "--no-progress"]
    assert main(argv) == 1  # the grid finished, one run failed
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 run(s) failed (exploding seed 0)")
    suite_dir = results / "xmarket-matching"
    (failure,) = read_failures(suite_dir)
    assert failure.reason == "RuntimeError: planted failure in fit"  # one line
    log = Path(failure.log).read_text()
    assert "Traceback" in log and "planted failure in fit" in log and "uie_exploding" in log
    # nothing half-written for the failed key; the other run is complete
    assert not (suite_dir / failure.key).exists()
    done = [json.loads(p.read_text()) for p in suite_dir.glob("*/result.json")]
    assert [(r["method"], r["status"]) for r in done] == [("random", "done")]
    report = next(reports.glob("xmarket-matching/*/report.md")).read_text()
    assert f"Exploding: failed: RuntimeError: planted failure in fit (traceback: {failure.log})" in report
    assert "| failed |" in report or " failed |" in report  # the column is marked in Table 1

    # a rerun retries only the failed run: random is read back, exploding runs again and now succeeds
    monkeypatch.setenv("UIE_TEST_EXPLODE", "0")
    _shutdown_ray()  # Ray workers inherit the environment when Ray starts
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "random" in out and "finished earlier" in out
    assert read_failures(suite_dir) == []  # the success cleared the record
    methods = sorted(json.loads(p.read_text())["method"] for p in suite_dir.glob("*/result.json"))
    assert methods == ["exploding", "random"]


def test_run_suite_returns_the_failed_record_in_order(exploding_plugin, tiny_data_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_suite("xmarket-matching", scale="tiny", methods=["exploding", "random"], seeds=[0],
                    allow_extra_methods=True, data_dir=tiny_data_dir, results_dir=tmp_path / "r", progress=False,
                    jobs=1, echo=lines.append)
    assert [(r.method, r.status) for r in out.records] == [("exploding", "failed"), ("random", "done")]
    failed = out.records[0]
    assert failed.reason == "RuntimeError: planted failure in fit"
    assert Path(failed.tags["failure_log"]).is_file()
    assert any("exploding" in line and "FAILED - RuntimeError: planted failure in fit" in line for line in lines)


@pytest.mark.parametrize("value", [",", " , ", ""])
def test_an_empty_methods_list_is_an_error(value: str, capsys) -> None:
    assert main(["run", "--suite", "xmarket-matching", "--scale", "tiny", "--methods", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --methods") and "empty list" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- ranking and transfer

#: Planted in every process (the driver through monkeypatch, Ray workers through sitecustomize):
#: ranking cells fed embeddings raise; SASRec's fit raises (a transfer ID baseline).
PLANT = '''
import os

if os.environ.get("UIE_PLANT") == "1":
    import benchmark.tasks.ranking.cells as _suite
    import methods.sasrec as _sasrec

    _real = _suite.train_cell

    def _train_cell(model, data, pretrained, *args, **kwargs):
        if pretrained is not None:
            raise RuntimeError("planted failure in a ranking cell")
        return _real(model, data, pretrained, *args, **kwargs)

    def _fit(self, *args, **kwargs):
        raise RuntimeError("planted failure in SASRec")

    _suite.train_cell = _train_cell
    _sasrec.SASRec.fit = _fit
'''


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "plant"
    root.mkdir()
    (root / "sitecustomize.py").write_text(PLANT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("UIE_PLANT", "1")
    exec(compile(PLANT, "plant", "exec"), {})  # the same fault in this process (undone by _undo_plant)
    _shutdown_ray()
    yield
    _shutdown_ray()


@pytest.fixture(autouse=True)
def _undo_plant():  # autouse: set up before ``planted``, so it saves the real functions
    import benchmark.tasks.ranking.cells as suite
    import methods.sasrec as sasrec

    real = suite.train_cell, sasrec.SASRec.fit
    yield
    suite.train_cell, sasrec.SASRec.fit = real


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_ranking_cell_is_recorded_and_the_others_run(planted, tiny_suite_run, tiny_data_dir: Path,
                                                               tmp_path: Path, jobs: int, capsys) -> None:
    import shutil

    _, results, _ = tiny_suite_run  # stored item2vec embeddings at tiny scale
    r = tmp_path / "r"
    shutil.copytree(results / "xmarket-matching", r / "xmarket-matching")
    argv = ["run", "--suite", "xmarket-ranking", "--scale", "tiny", "--models", "din", "--methods", "item2vec",
            "--dataset", "xmarket-sim", "--seeds", "0", "--jobs", str(jobs), "--data-dir", str(tiny_data_dir), "--results-dir", str(r),
            "--reports-dir", str(tmp_path / "reports"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 run(s) failed (DIN + item2vec seed 0)")
    (failure,) = read_failures(r / "xmarket-ranking")
    assert failure.reason == "RuntimeError: planted failure in a ranking cell"
    assert "planted failure" in Path(failure.log).read_text()
    assert not (r / "xmarket-ranking" / failure.key).exists()
    done = [json.loads(p.read_text())["embedding"] for p in (r / "xmarket-ranking").glob("*/result.json")]
    assert done == ["none"]
    report = next((tmp_path / "reports").glob("xmarket-ranking/*/report.md")).read_text()
    assert "Failed cells" in report and failure.line() in report


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_transfer_condition_is_recorded_and_the_others_run(planted, tiny_data_dir: Path, tmp_path: Path,
                                                                     jobs: int, capsys) -> None:
    argv = ["run", "--suite", "xmarket-transfer", "--scale", "tiny", "--methods", "sasrec,gru4rec", "--seeds", "0",
            "--dataset", "xmarket-sim",
            "--jobs", str(jobs), "--data-dir", str(tiny_data_dir), "--results-dir", str(tmp_path / "r"),
            "--reports-dir", str(tmp_path / "reports"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 run(s) failed (sasrec")
    out = tmp_path / "r" / "xmarket-transfer" / "transfer"
    (failure,) = read_failures(out)
    assert failure.reason == "RuntimeError: planted failure in SASRec"
    assert not (out / failure.key).exists()
    done = [json.loads(p.read_text())["condition"]["method"] for p in out.glob("*/result.json")]
    assert done == ["gru4rec"]
    report = next((tmp_path / "reports").glob("xmarket-transfer/*/report.md")).read_text()
    assert "Failed conditions" in report and failure.line() in report
