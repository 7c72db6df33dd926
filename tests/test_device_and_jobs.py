"""The ``device`` key of torch methods and the ``--jobs`` setting (issue 15, items 2 and 4); CPU only."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from benchmark import registry
from benchmark.devices import check_device, check_devices
from benchmark.errors import ConfigError
from benchmark.grid.jobs import check_jobs, effective_jobs
from benchmark.grid.plan import plan
from benchmark.tasks.matching.runner import run_suite

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def test_cpu_and_the_default_are_accepted() -> None:
    assert check_device("cpu") == "cpu"
    assert check_device(None) == "cpu"
    assert check_device(" cpu ") == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CUDA", "", 0])
def test_an_unknown_device_is_a_config_error_naming_the_key(bad) -> None:
    with pytest.raises(ConfigError, match=r"^uae\.device: "):
        check_device(bad, "uae.device")


@no_cuda
def test_cuda_without_a_cuda_device_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^pgg\.device: 'cuda:1' was asked for but this machine has no CUDA"):
        check_devices([("popularity", {}), ("pgg", {"device": "cuda:1"})])


def _uses_torch(cls: type) -> bool:
    return any(re.search(r"^\s*(import torch|from torch)", path.read_text(), re.M)
               for path in cls.home().glob("*.py"))


def test_every_torch_method_has_a_cpu_device_key() -> None:
    torch_methods = {name for name, cls in registry.methods().items() if _uses_torch(cls)}
    assert {"uniembedding", "uae", "cb2cf", "pgg", "sasrec"} <= torch_methods
    for name in sorted(torch_methods):
        assert registry.get_method(name).default_config().get("device") == "cpu", name


@no_cuda
def test_the_grid_is_checked_before_any_work(tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    with pytest.raises(ConfigError, match=r"^uae\.device: 'cuda'"):
        plan("xmarket-matching", scale="tiny", methods=["uae", "pgg"], overrides=("uae.device=cuda",))
    results = tmp_path / "results"
    code = main(["run", "--suite", "xmarket-matching", "--scale", "tiny", "--methods", "pgg,uae",
                 "--set", "uae.device=cuda", "--data-dir", str(tmp_path / "data"), "--results-dir", str(results),
                 "--reports-dir", str(tmp_path / "reports"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "uae.device" in err[0] and "no CUDA device" in err[0]
    assert not results.exists() and not (tmp_path / "data").exists()  # nothing loaded, nothing written


def test_features_device_is_optional_and_checked() -> None:
    base = plan("xmarket-matching", scale="tiny", methods=["uae"])[0]
    cpu = plan("xmarket-matching", scale="tiny", methods=["uae"], overrides=("features.device=cpu",))[0]
    assert "device" not in base.features and cpu.canonical_json() == base.canonical_json()  # run keys kept
    with pytest.raises(ConfigError, match=r"^features\.device: unknown device 'gpu'"):
        plan("xmarket-matching", scale="tiny", methods=["uae"], overrides=("features.device=gpu",))


def test_an_unknown_device_in_the_ranking_suite_names_its_key(tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    code = main(["run", "--suite", "xmarket-ranking", "--scale", "tiny", "--set", "training.device=gpu",
                 "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "training.device" in err[0] and "'gpu'" in err[0]


def test_cpu_device_moves_and_copies_nothing() -> None:
    """Why CPU results stay bit-identical: on the CPU every ``.to(device)`` is the same tensor, and
    the random streams stay on the CPU generator."""
    import numpy as np

    from benchmark.data.model import Sequences
    from methods.shared.mf import train_user_item_mf
    from methods.uniembedding.batching import make_batch, pad_sequences

    seqs = Sequences(users=np.arange(3, dtype=np.int32), offsets=np.array([0, 3, 5, 9]),
                     items=np.array([0, 1, 2, 1, 3, 0, 2, 3, 4], dtype=np.int32),
                     day=np.zeros(9, dtype=np.int32), rating=np.full(9, np.nan, dtype=np.float32))
    batch = make_batch(pad_sequences(seqs, np.zeros(5, dtype=np.int64), 4), np.arange(3))
    moved = batch.to(torch.device("cpu"))
    assert all(getattr(moved, k) is getattr(batch, k) for k in vars(batch) if k != "chunks")
    assert all(a is b for a, b in zip(moved.chunks, batch.chunks, strict=True))
    cfg = {"dim": 4, "epochs": 2, "lr": 0.01, "batch_size": 4, "negatives": 3, "l2": 0.1}
    a = train_user_item_mf(seqs, 5, cfg, seed=3)
    b = train_user_item_mf(seqs, 5, cfg, seed=3, device="cpu")
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("bad", [0, -2, "0", "-1", "two", "1.5"])
def test_bad_jobs_are_one_config_error(bad) -> None:
    with pytest.raises(ConfigError, match="--jobs must be a positive integer or auto"):
        check_jobs(bad)


def test_jobs_auto_and_the_clamp(monkeypatch, caplog) -> None:
    import benchmark.grid.jobs as jobs

    monkeypatch.setattr(jobs, "machine_cores", lambda: 4)
    assert check_jobs("auto") == "auto" and check_jobs("3") == 3
    with caplog.at_level(logging.WARNING):
        assert check_jobs(9) == 4
    assert "--jobs 9 is more than this machine's 4 cores: clamped to 4" in caplog.text
    assert effective_jobs("auto", pending=10) == (4, 1)
    assert effective_jobs("auto", pending=3) == (3, 1)
    assert effective_jobs("auto", pending=0) == (1, 1)  # everything finished earlier: no Ray
    assert effective_jobs(2, pending=10) == (2, 1)  # one torch thread per run whatever the jobs


def test_auto_with_one_run_to_do_runs_here_without_ray(tiny_data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import benchmark.tasks.matching.runner as runner

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a single run")

    monkeypatch.setattr(runner, "run_on_ray", no_ray)
    out = run_suite("xmarket-matching", scale="tiny", methods=["random"], jobs="auto", data_dir=tiny_data_dir,
                    results_dir=tmp_path / "results", progress=False, echo=lambda s: None)
    (record,) = out.records
    assert record.status == "done" and record.machine["run_threads"] == 1
