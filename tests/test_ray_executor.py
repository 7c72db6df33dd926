"""The Ray executor (the scale-out path) gives the same runs and numbers as the local one."""

from __future__ import annotations

import json

import pytest

from benchmark.tasks.matching.runner import run_suite


@pytest.mark.slow
def test_ray_executor_matches_local(tiny_suite_run, tiny_data_dir, tmp_path) -> None:
    import ray  # installed with the extras (tox: all); a broken ray install must fail, not skip
    local, _, _ = tiny_suite_run
    try:
        remote = run_suite("xmarket-matching", scale="tiny", methods=["random", "popularity"], executor="ray",
                           data_dir=tiny_data_dir, results_dir=tmp_path / "results", progress=False,
                           echo=lambda s: None)
    finally:
        ray.shutdown()
    by_key = {r.run_key: r for r in local.records}
    assert len(remote.records) == 2
    for record in remote.records:
        assert record.run_key in by_key  # same resolved config + manifest -> same run key
        assert json.dumps(record.metrics, sort_keys=True) == json.dumps(by_key[record.run_key].metrics, sort_keys=True)
        assert (tmp_path / "results" / "xmarket-matching" / record.run_key / "ranks.npy").exists()
        assert record.mlflow_run_id


@pytest.mark.slow
def test_jobs_runs_in_parallel_with_the_same_keys_and_metrics(tiny_suite_run, tiny_data_dir, tmp_path) -> None:
    import ray  # installed with the extras (tox: all); a broken ray install must fail, not skip
    local, local_results, _ = tiny_suite_run
    try:
        par = run_suite("xmarket-matching", scale="tiny", methods=["random", "popularity"], jobs=2,
                        data_dir=tiny_data_dir, results_dir=tmp_path / "results", progress=False, echo=lambda s: None)
    finally:
        ray.shutdown()
    by_key = {r.run_key: r for r in local.records}
    assert sorted(r.method for r in par.records) == ["popularity", "random"]
    for record in par.records:
        assert json.dumps(record.metrics, sort_keys=True) == json.dumps(by_key[record.run_key].metrics, sort_keys=True)
        for name in ("ranks.npy", "next_item_ranks.npy", "item_embeddings.npy"):  # the same bytes
            mine = tmp_path / "results" / "xmarket-matching" / record.run_key / name
            assert mine.read_bytes() == (local_results / "xmarket-matching" / record.run_key / name).read_bytes()
        assert record.machine["run_threads"] == 1


@pytest.mark.parametrize("jobs", [0, -2])
def test_bad_jobs_values_are_refused(jobs) -> None:
    from benchmark.errors import BenchmarkError
    from benchmark.grid.jobs import check_jobs

    with pytest.raises(BenchmarkError, match="--jobs"):
        check_jobs(jobs)
    assert check_jobs(10_000) >= 1  # clamped to the machine's cores


@pytest.mark.slow
def test_local_jobs_workers_run_at_the_drivers_priority(tmp_path) -> None:
    """Ray's default worker niceness is 15; `run --jobs N` must not demote the user's own grid."""
    import os

    import ray  # installed with the extras (tox: all); a broken ray install must fail, not skip

    from benchmark.grid.ray_executor import ray_map, start_ray

    try:
        assert ray_map(os.nice, []) == []  # nothing to do: no Ray started
        assert not ray.is_initialized()
        start_ray(local_cpus=1)
        niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    finally:
        ray.shutdown()
    assert niceness == os.nice(0)
