"""Reliability II (issue 26): relocatable data, no reads through planted links, range-checked numbers,
CLI values checked before any data loads, verified artefacts, honest fetches, whole reports, exact
Popularity. One case per item, on the tiny twin with the cheapest methods (tests/test_faults.py has the rest).
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.data.csv_source import load_csv
from benchmark.data.recbole_source import load_recbole
from benchmark.data.sources import load_dataset, sim_dir
from benchmark.data.split import cached_split
from benchmark.data.xmarket import load_xmarket
from benchmark.data.xmarket_meta import read_metadata
from benchmark.errors import DataError
from benchmark.evaluation.exact import normalise_rows, target_ranks
from benchmark.features.cache import FeatureCache
from benchmark.fsutil import CACHE_DIR_ENV
from benchmark.grid.plan import plan, run_key
from benchmark.inputs import features_needed, prepare_inputs
from benchmark.plugin import RunContext
from benchmark.tasks.matching.runner import execute_run
from methods.popularity import Popularity

ROOT = Path(__file__).resolve().parents[1]
SUITE = "xmarket-matching"


def _main(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


# -- 1. relocatable data ------------------------------------------------------------------------


def test_a_moved_or_regenerated_twin_keeps_run_keys_and_images(tiny_data_dir, tmp_path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data_dir, tmp_path / "copy", symlinks=True)  # cp -a, caches included
    (tmp_path / "copy").rename(moved)
    elsewhere = tmp_path / "elsewhere" / "data"  # a twin generated at another path
    load_dataset("xmarket-sim", elsewhere, scale="tiny", seed=0, progress=False)
    (clip,) = plan(SUITE, scale="tiny", methods=["clip"])
    seen = []
    for data in (tiny_data_dir, moved, elsewhere):
        # the image side of CLIP's inputs (the text side does not depend on where the data lies)
        inputs = prepare_inputs(clip.dataset, clip.split, dict(clip.features, text_encoder=None), data, clip.scale,
                                progress=False)
        meta = inputs.dataset.meta
        assert meta["images_local"] == meta["images_with_url"] > 200  # no image refused as "outside"
        assert all(p.startswith(str(data.resolve())) for p in inputs.dataset.items.image_path if p)
        seen.append((run_key(clip, inputs), inputs.dataset.fingerprint, inputs.features.image.tobytes(),
                     inputs.features.image_mask.tobytes()))
    assert seen[0] == seen[1] == seen[2]


# -- 2. a data dir that cannot hold caches -------------------------------------------------------


def _twin_copy(tiny_data_dir: Path, data: Path) -> Path:
    """A copy of the session's tiny twin (its caches included) under ``data``; returns the twin's dir."""
    twin = sim_dir(data, "tiny", 0)
    shutil.copytree(sim_dir(tiny_data_dir, "tiny", 0), twin, symlinks=True)
    return twin


def _block(folder: Path) -> None:
    """Make ``folder`` unusable as a directory: stands in for a read-only data dir (tests run as root)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("not a folder")


def test_a_data_dir_that_cannot_hold_caches_uses_a_writable_one_and_keeps_its_images(
        tiny_data_dir, tmp_path, monkeypatch, caplog, capsys) -> None:
    twin = _twin_copy(tiny_data_dir, tmp_path / "data")
    _block(twin / ".cache")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "user-cache"))
    ds = load_dataset("xmarket-sim", tmp_path / "data", scale="tiny", progress=False)
    assert ds.meta["images_local"] == ds.meta["images_with_url"] > 200  # no modality dropped
    assert all(p.startswith(str(tmp_path / "user-cache")) for p in ds.items.image_path if p)
    named = [r.getMessage() for r in caplog.records if "caching in" in r.getMessage()]
    assert len(named) == 1 and str(twin / ".cache") in named[0] and str(tmp_path / "user-cache") in named[0]

    other = _twin_copy(tiny_data_dir, tmp_path / "data2")  # neither the data dir nor the cache dir can be written
    _block(other / ".cache")
    (tmp_path / "no-cache").write_text("a file, not a folder")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "no-cache"))
    code, err = _main(capsys, "run", "--suite", SUITE, "--scale", "tiny", "--methods", "random", "--dataset",
                      "xmarket-sim", "--data-dir", str(tmp_path / "data2"), "--results-dir", str(tmp_path / "r"),
                      "--reports-dir", str(tmp_path / "p"), "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot hold caches" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()


# -- 3. no cache read through a planted link -----------------------------------------------------


def test_a_link_planted_in_the_image_cache_is_not_followed(tiny_data_dir, tmp_path, caplog) -> None:
    twin = _twin_copy(tiny_data_dir, tmp_path / "data")
    entry = sorted((twin / ".cache" / "images").glob("*.png"))[0]  # its asin has a valid in-dataset URL
    outside = tmp_path / "outside.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(outside)
    before = outside.read_bytes()
    entry.unlink()
    entry.symlink_to(outside)
    ds = load_dataset("xmarket-sim", tmp_path / "data", scale="tiny", progress=False)
    assert str(entry) in caplog.text and "symbolic link" in caplog.text
    assert not entry.is_symlink() and entry.read_bytes() == (twin / "images" / entry.name).read_bytes()
    assert str(entry) in set(ds.items.image_path) and outside.read_bytes() == before


def _plant_link(path: Path, outside: Path) -> None:
    """Move a cache file out of its cache and leave a link to it: same bytes, valid checksum."""
    shutil.move(path, outside)
    path.symlink_to(outside)


def test_links_in_the_parse_split_and_feature_caches_are_refused(tiny_data_dir, tmp_path, caplog) -> None:
    root = sim_dir(tiny_data_dir, "tiny", 0)
    load_xmarket(root, cache_dir=tmp_path / "parsed", progress=False, name="xmarket-sim")
    (npz,) = (tmp_path / "parsed").glob("*.npz")
    _plant_link(npz, tmp_path / "outside.npz")
    again = load_xmarket(root, cache_dir=tmp_path / "parsed", progress=False, name="xmarket-sim")
    assert "from_cache" not in again.meta and f"{npz.name}: it is a symbolic link" in caplog.text

    split = cached_split(again, tmp_path / "splits")
    (path,) = (tmp_path / "splits").glob("split-*.npz")
    _plant_link(path, tmp_path / "outside-split.npz")
    caplog.clear()
    assert cached_split(again, tmp_path / "splits").manifest_hash == split.manifest_hash
    assert str(path) in caplog.text and "symbolic link" in caplog.text and not path.is_symlink()

    cache = FeatureCache(tmp_path / "features")
    vec = cache.save("text", "k1", np.ones((3, 2), dtype=np.float32), None, {})
    _plant_link(vec, tmp_path / "outside.npy")
    assert cache.load("text", "k1", 3, 2, False) is None


# -- 4. ratings and every other number a loader reads are range-checked --------------------------

U1 = "AFXKARXBL3X3LO5GNN4XAXC7XMPQ"


@pytest.mark.parametrize("rating", ["nan", "inf", "-inf", "9" * 5000, "1e400", "0", "6"])
def test_a_rating_that_is_not_a_finite_star_rating_is_a_one_line_error(tmp_path, capsys, rating) -> None:
    path = tmp_path / "us" / "Books" / "ratings_us_Books.txt.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(f"{U1} 0061806765 5 2015-09-29\n{U1} 0061806766 {rating} 2015-09-30\n".encode()))
    with pytest.raises(DataError, match=rf"^{path}:2: rating '.*' is not a finite number in \[1, 5\]$"):
        load_xmarket(tmp_path, (("us", "Books"),), progress=False)
    code, err = _main(capsys, "run", "--suite", SUITE, "--scale", "tiny", "--methods", "random", "--dataset",
                      f"xmarket:{tmp_path}", "--domains", "us/Books", "--data-dir", str(tmp_path / "d"),
                      "--results-dir", str(tmp_path / "r"), "--reports-dir", str(tmp_path / "p"), "--no-progress")
    told = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(told) == 1 and told[0].startswith(f"error: {path}:2: rating")
    assert not (tmp_path / "r").exists()


def test_other_loaders_and_metadata_numbers_are_range_checked_too(tmp_path) -> None:
    table = tmp_path / "inter.csv"
    table.write_text("user,item,rating,timestamp\nu1,i1,4,1400000000\nu1,i2,inf,1400000100\n")
    with pytest.raises(DataError, match=rf"^{table}:3: rating 'inf' is not a finite number"):
        load_csv(table)
    table.write_text("user,item,rating,timestamp\nu1,i1,4,1400000000\nu1,i2,3,1e300\n")
    with pytest.raises(DataError, match=rf"^{table}:3: time '1e300' is not a finite number"):
        load_csv(table)
    folder = tmp_path / "rb"
    folder.mkdir()
    (folder / "rb.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                     "u1\ti1\t4\t1\nu1\ti2\t-inf\t2\n")
    with pytest.raises(DataError, match=r"rb.inter:3: rating '-inf' is not a finite number"):
        load_recbole(str(folder))
    meta = tmp_path / "metadata_us_Books.json.gz"
    for field, value in (("averageRating", "inf"), ("price", "$" + "9" * 400)):
        meta.write_bytes(gzip.compress(b'{"asin": "A1", "title": "x"}\n'
                                       + json.dumps({"asin": "A2", "title": "y", field: value}).encode() + b"\n"))
        with pytest.raises(DataError, match=rf"^{meta}:2: {field} '.*' is not a finite number"):
            read_metadata(meta, {"A1", "A2"}, "Books", progress=False)


# -- 5, 9. every CLI value is checked before any data loads ---------------------------------------


@pytest.mark.parametrize("extra, message", [
    (("--seeds", ","), "empty list"),
    (("--seeds", "-1"), "seed -1 is out of range [0, 2147483647]"),
    (("--seeds", "9" * 30), "is out of range [0, 2147483647]"),
    (("--seeds", "0,1,0"), "seed 0 is listed twice"),
    (("--set", "features.text_encoder=nope"), "unknown text encoder"),
    (("--set", "features.image_encoder=offline"), "unknown image encoder"),
    (("--set", "item2vec.epochs=100000000"), "item2vec.epochs=100000000: at most 10000"),
    (("--reports-dir", "{blocker}/reports"), "--reports-dir"),
    (("--results-dir", "{blocker}/results"), "--results-dir"),
])
def test_bad_cli_values_stop_before_any_data_is_loaded(tmp_path, capsys, extra, message) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = _main(capsys, "run", "--suite", SUITE, "--scale", "tiny", "--methods", "item2vec,clip",
                      "--dataset", "xmarket-sim", "--data-dir", str(tmp_path / "data"),
                      "--results-dir", str(tmp_path / "r"), "--reports-dir", str(tmp_path / "p"), "--no-progress",
                      *(a.format(blocker=blocker) for a in extra))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no twin generated, nothing written


# -- 6. stored artefacts are verified when report and export read them ----------------------------


@pytest.fixture(scope="module")
def popularity_results(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One stored Popularity run (its folder checksummed): (results dir, run folder)."""
    (cfg,) = plan(SUITE, scale="tiny", methods=["popularity"])
    features = features_needed(cfg.features, {Popularity})
    inputs = prepare_inputs(cfg.dataset, cfg.split, features, tiny_data_dir, cfg.scale, progress=False)
    results = tmp_path_factory.mktemp("pop") / "results"
    record = execute_run(cfg, inputs, results, None, progress=False)
    return results, results / SUITE / record.run_key


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the array payload: still a well-formed .npy
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damaged, command", [("ranks.npy", "report"), ("item_embeddings.npy", "embeddings")])
def test_a_flipped_byte_in_a_stored_artefact_is_named_by_report_and_export(popularity_results, tmp_path, capsys,
                                                                          caplog, damaged, command) -> None:
    results = tmp_path / "results"
    shutil.copytree(popularity_results[0], results)
    folder = results / SUITE / popularity_results[1].name
    _flip(folder / damaged)
    if command == "report":  # one method: no paired test reads the ranks, the report still checks them
        code, err = _main(capsys, "report", "--suite", SUITE, "--results-dir", str(results),
                          "--reports-dir", str(tmp_path / "reports"))
    else:
        code, err = _main(capsys, "embeddings", "export", "--suite", SUITE, "--method", "popularity",
                          "--results-dir", str(results), "--out", str(tmp_path / "out" / "pop"))
    assert code == 2 and not (tmp_path / "out").exists() and not (tmp_path / "reports").exists()
    if command == "report":  # the damaged run is named in one warning and left out: here nothing is left to report
        warned = [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()]
        assert len(warned) == 1 and damaged in warned[0] and str(folder) in warned[0] and "left out" in warned[0]
        assert "no finished runs" in err
    else:  # the run asked for by name: one line naming the file
        assert len(err.strip().splitlines()) == 1 and damaged in err and str(folder) in err and "checksum" in err


# -- 7. data fetch says what it downloaded and tests every file it accepts -------------------------


def test_fetch_never_counts_a_file_it_did_not_download_and_gzip_tests_every_file(tmp_path, capsys) -> None:
    data = tmp_path / "xmarket"
    shutil.copytree(ROOT / "datasets" / "fixtures" / "xmarket-mini", data)  # all six files already there
    code = main(["data", "fetch", "xmarket", "--data-dir", str(data), "--allow-unverified"])  # offline: no download
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("fetched 0 file(s), 6 already present") and "6 not verified" in out
    bad = data / "us" / "Books" / "ratings_us_Books.txt.gz"
    bad.write_bytes(np.random.default_rng(0).bytes(100))  # a random 100-byte "download"
    code, err = _main(capsys, "data", "fetch", "xmarket", "--data-dir", str(data), "--allow-unverified")
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{bad}: already present but not a complete gzip" in err


# -- 8. reports are written to a temporary folder and swapped in whole ----------------------------

_KILL_MID_REPORT = """
import os, signal, sys
from benchmark.reporting import figures
def die(*a, **k):  # table1.csv/.tex are written by now, report.md not yet
    os.kill(os.getpid(), signal.SIGKILL)
figures.figure6_head_tail = die
from benchmark.cli import main
main(["report", "--suite", "xmarket-matching", "--results-dir", sys.argv[1], "--reports-dir", sys.argv[2]])
"""


def _digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_report_killed_midway_leaves_the_previous_report_whole(popularity_results, tmp_path, capsys) -> None:
    results, reports = popularity_results[0], tmp_path / "reports"
    argv = ["report", "--suite", SUITE, "--results-dir", str(results), "--reports-dir", str(reports)]
    assert main(argv) == 0
    (final,) = (reports / SUITE).iterdir()
    (final / "figure7_domains.png").write_bytes(b"an older run's figure")
    (final / "table1.csv").write_text("an older run's table\n")
    (final / "notes.txt").write_text("kept: not a report artefact")
    before = _digest(final)
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_REPORT, str(results), str(reports)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _digest(final) == before  # the previous report, untouched
    (tmp,) = [p for p in (reports / SUITE).iterdir() if p.name.startswith(".tmp-")]
    assert (tmp / "table1.csv").is_file() and not (tmp / "report.md").exists()  # the dead writer's half
    assert main(argv) == 0
    assert sorted(p.name for p in (reports / SUITE).iterdir()) == [final.name]  # the dead writer's folder is gone
    after = _digest(final)
    assert "report.md" in after and "figure7_domains.png" not in after  # nothing of the older run beside it
    assert after["notes.txt"] == before["notes.txt"] and after["table1.csv"] != before["table1.csv"]
    capsys.readouterr()


# -- 10. Popularity orders items exactly by training count ----------------------------------------


def test_popularity_orders_143k_items_exactly_by_near_equal_training_counts() -> None:
    n = 143_370  # the paper twin's catalogue
    rng = np.random.default_rng(0)
    counts = rng.permutation(n).astype(np.int64) + 500  # neighbours differ by one interaction (566 vs 565)
    ties = rng.choice(n, 3000, replace=False)
    counts[ties] = np.median(counts)  # and a group of equal counts: the index tie rule orders them
    model = Popularity()
    model.fit(SimpleNamespace(item_train_count=counts), None, {}, RunContext())
    emb = model.item_embeddings()
    order = np.lexsort((np.arange(n), -counts))  # by count, then by item index
    score, count = normalise_rows(emb)[order, 0], counts[order]  # the score of query (1, 0)
    assert (np.diff(score)[np.diff(count) != 0] < 0).all() and (np.diff(score)[np.diff(count) == 0] == 0).all()
    query = order[-1]  # the least popular item asks; every other item is a candidate
    targets = np.concatenate([order[:500], order[rng.choice(np.arange(500, n - 1), 500, replace=False)]])
    ranks = target_ranks(emb, np.full(len(targets), query), targets, query_embeddings=model.query_embeddings())
    expected = np.empty(n, dtype=np.int64)
    expected[order] = np.arange(1, n + 1)
    np.testing.assert_array_equal(ranks, expected[targets])
