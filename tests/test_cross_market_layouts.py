"""The published cross-market layouts, written small in their real formats, load as published.

XMarket's raw download (gzip ratings, no metadata), the cross-market 5-core files (dated and
undated), the WSDM Cup 2022 files (flat and the starter kit's folders) and a CSV with a market
column: markets are domains, items are keyed per market, undated data says so, and
``--dataset xmarket --data-dir D`` reads what ``--dataset D`` reads.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.csv_source import load_csv
from benchmark.data.paper_data import describe
from benchmark.data.sources import load_dataset, real_xmarket_present
from benchmark.data.split import build_split
from benchmark.errors import DataError
from benchmark.inputs import dataset_label

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("Books", "Electronics", "Cell_Phones_and_Accessories")


def write_raw(root: Path, rows: dict[str, list[str]]) -> Path:
    """XMarket's raw layout: ``us/<Category>/ratings_us_<Category>.txt.gz``, 'userId itemId rating date', no header."""
    for cat, lines in rows.items():
        d = root / "us" / cat
        d.mkdir(parents=True, exist_ok=True)
        with gzip.open(d / f"ratings_us_{cat}.txt.gz", "wt") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
    return root


RAW = {"Books": ["A1 0001 5 2019-01-01", "A2 0001 4 2019-01-02", "A1 0002 3 2019-01-03"],
       "Electronics": ["A1 B01 5 2019-02-01", "A3 B02 2 2019-02-02"],
       "Cell_Phones_and_Accessories": ["A3 B03 4 2019-03-01", "A2 B01 5 2019-03-02"]}


def write_tsv(path: Path, rows: list[tuple], header: str = "userId\titemId\trating") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


# WSDM Cup 2022: users carry their market, item ids are shared by the markets
S1 = [("s1U1", "P1", 5.0), ("s1U1", "P2", 4.0), ("s1U2", "P1", 3.0), ("s1U2", "P3", 5.0)]
T1 = [("t1U1", "P1", 5.0), ("t1U1", "P3", 2.0), ("t1U2", "P2", 1.0), ("t1U2", "P1", 4.0)]


# --- 1. a subset of XMarket is not the paper's XMarket ---------------------------------------------


def test_a_raw_xmarket_subset_without_metadata_is_other_data(tmp_path, caplog):
    root = write_raw(tmp_path / "d", RAW)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("xmarket", root, progress=False)
    assert ds.items.title is None  # ID-only, said in one warning
    assert sum("no metadata" in r.getMessage() for r in caplog.records) == 1
    info = ds.meta["paper_data"]
    assert info["kind"] == "other"
    assert "us/Books 3 of 9,053,776 ratings rows" in info["what"]
    assert dataset_label(ds, None) == "xmarket (real; not the paper's XMarket)"


def test_the_papers_xmarket_is_recognised_by_its_published_counts_and_checksums(tmp_path):
    from benchmark.fsutil import sha256_file

    ds = load_dataset("xmarket", write_raw(tmp_path / "d", RAW), progress=False)
    files = [{"kind": "ratings", "path": f"us/{c}/ratings_us_{c}.txt.gz", "rows": len(RAW[c]),
              "items": len({line.split()[1] for line in RAW[c]}), "sha256": None} for c in DOMAINS]
    card = {"files": files}
    assert describe(ds, card)["kind"] == "paper"  # counts as published: the paper's data
    assert "ID-only" in describe(ds, card)["what"]
    files[0]["sha256"] = sha256_file(tmp_path / "d/us/Books/ratings_us_Books.txt.gz")
    assert describe(ds, card)["kind"] == "paper"
    files[0]["sha256"] = "0" * 64
    assert describe(ds, card)["kind"] == "other" and "sha256" in describe(ds, card)["what"]
    files[0]["sha256"], files[1]["rows"] = None, 99
    assert describe(ds, card)["kind"] == "other" and "us/Electronics 2 of 99" in describe(ds, card)["what"]
    books = load_dataset("xmarket", tmp_path / "d", domains="us/Books", progress=False)
    assert describe(books, {"files": [dict(f, rows=len(RAW[f["path"].split("/")[1]])) for f in files]})["kind"] == "other"


def test_the_twin_is_its_own_kind(tiny_data_dir):
    ds = load_dataset("xmarket-sim", tiny_data_dir, scale="tiny", progress=False)
    assert ds.meta["paper_data"]["kind"] == "twin" and "SYNTHETIC" in ds.meta["paper_data"]["what"]


# --- 2. the WSDM Cup 2022 layout ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "starter kit"])
def test_wsdm_cup_files_load_with_markets_as_domains(tmp_path, layout, caplog):
    root = tmp_path / layout
    if layout == "flat":
        write_tsv(root / "s1_5core.tsv", S1)
        write_tsv(root / "t1.tsv", T1)
    else:
        write_tsv(root / "s1" / "train_5core.tsv", S1)
        write_tsv(root / "t1" / "train.tsv", T1)
        write_tsv(root / "t1" / "train_5core.tsv", T1[:2])  # repeats training rows: dropped
        write_tsv(root / "t1" / "valid_qrel.tsv", [("t1U1", "P9", 1), ("t1U2", "P3", 1)])
        (root / "t1" / "valid_run.tsv").write_text("t1U1\tP1,P2,P9\nt1U2\tP3,P1,P2\n")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(f"xmarket:{root}", tmp_path, progress=False)
    assert ds.name == "wsdm-cup-2022" and ds.items.domains == ("s1", "t1")
    assert ds.meta["undated"] == "file order" and not ds.interactions.day.any()
    assert sum("no dates" in r.getMessage() for r in caplog.records) == 1
    # P1 is one product in both markets: two items, one per market; a user's items are all in its market
    assert list(ds.items.source_id).count("P1") == 2 and ds.meta["ids_in_several_domains"] == 3
    user_dom = {(ds.interactions.user_ids[u], int(ds.items.domain[i])) for u, i in
                zip(ds.interactions.user, ds.interactions.item, strict=True)}
    assert {u: d for u, d in user_dom} == {"s1U1": 0, "s1U2": 0, "t1U1": 1, "t1U2": 1} and len(user_dom) == 4
    if layout == "starter kit":
        assert ds.meta["duplicate_pairs_dropped"] == 2 and len(ds.interactions) == 10
        assert ds.meta["candidate_lists_not_loaded"] == {"t1/valid_run.tsv": 2}
        last = ds.interactions.item[ds.interactions.user == list(ds.interactions.user_ids).index("t1U1")][-1]
        assert ds.items.source_id[last] == "P9"  # the held-out validation item is the user's last
        assert np.isnan(ds.interactions.rating[-2:]).all()  # qrel relevance is not a rating
    split = build_split(ds, seed=0, min_interactions=2)
    assert split.meta["undated"] == "file order" and split.meta["counts"]["cross_domain_cases"] == 0
    assert load_dataset(f"xmarket:{root}", tmp_path, domains="t1", progress=False).items.domains == ("t1",)


@pytest.mark.parametrize("content, expect", [
    ("userId\titemId\n", "expected the tab-separated header 'userId itemId rating'"),
    ("userId\titemId\trating\nt1U1\tP1\tfive\n", "t1.tsv:2: unparseable rating 'five'"),
    ("userId\titemId\trating\nt1U1\t\t5.0\n", "t1.tsv:2: empty itemId"),
    ("userId\titemId\trating\nt1U1\tP1\t5.0\t9\n", "t1.tsv:2: malformed line"),
    ("userId\titemId\trating\nt1U1\tP1\n", "t1.tsv:2: empty rating"),
])
def test_bad_wsdm_files_are_one_line_naming_the_file_exit_2(tmp_path, content, expect):
    root = tmp_path / "w"
    root.mkdir()
    (root / "t1.tsv").write_text(content)
    res = _stats(str(root), tmp_path / "data")
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and expect in err[0], res.stderr
    assert not (tmp_path / "data" / ".cache").exists()


def test_a_folder_of_no_known_layout_names_the_layouts_and_the_card_to_write(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hello\n")
    for spec in (str(tmp_path / "d"), "xmarket"):
        res = _stats(spec, tmp_path / "d")
        err = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(err) == 1, res.stderr
        assert "WSDM Cup 2022" in err[0] and "5-core" in err[0] and "<market>/<Category>/ratings_" in err[0]
        if spec != "xmarket":
            assert "csv card" in err[0] and "datasets/wsdm-cup-2022.yaml" in err[0]


# --- 3. the CSV route keys items per market ----------------------------------------------------------


def test_csv_with_a_market_column_keys_items_per_market(tmp_path, caplog):
    rows = [(u.replace("s1", "").replace("t1", ""), i, r, m) for m, rs in (("s1", S1), ("t1", T1)) for u, i, r in rs]
    path = write_tsv(tmp_path / "all.tsv", rows, header="user\titem\trating\tmarket")
    with caplog.at_level(logging.WARNING):
        ds = load_csv(path, domain_field="market")
    assert ds.items.domains == ("s1", "t1") and len(ds.items) == 6  # P1, P2, P3 in each market
    dom_of = ds.items.domain[ds.interactions.item]
    first_row_market = np.array([m for *_, m in rows])
    assert (np.asarray(ds.items.domains)[dom_of] == first_row_market).all()  # every row keeps its market
    warned = [r.getMessage() for r in caplog.records if "occur in several domains" in r.getMessage()]
    assert len(warned) == 1 and "shared_item_ids: true" in warned[0]
    card = tmp_path / "card.yaml"
    card.write_text(f"name: mine\nformat: csv\nfile: {path}\nshared_item_ids: true\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        shared = load_csv(path, domain_field="market", card=str(card))
    assert not [r for r in caplog.records if "several domains" in r.getMessage()]
    assert shared.meta["shared_item_ids"] and len(shared.items) == 6


def test_csv_whose_ids_stay_in_one_domain_keeps_its_fingerprint(tmp_path):
    path = write_tsv(tmp_path / "one.tsv", [("u1", "a", 5, "x"), ("u1", "b", 4, "y")],
                     header="user\titem\trating\tgenre")
    ds = load_csv(path, domain_field="genre")
    assert ds.meta["ids_in_several_domains"] == 0 and list(ds.items.source_id) == ["a", "b"]


# --- 4. undated 5-core files -------------------------------------------------------------------------


def test_undated_5core_files_say_so_everywhere(tmp_path, caplog):
    root = tmp_path / "fc"
    root.mkdir()
    for market, rows in (("de", "u1 A 4.0\nu1 B 5.0\nu2 A 3.0\n"), ("fr", "u3 A 2.0\nu3 C 1.0\n")):
        (root / f"{market}_5core.txt").write_text("userId itemId rate\n" + rows)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(f"xmarket:{root}", tmp_path, progress=False)
    assert ds.name == "xmarket-5core" and ds.meta["undated"] == "file order"
    assert sum("no dates" in r.getMessage() for r in caplog.records) == 1
    assert "undated" in dataset_label(ds, None) and build_split(ds, seed=0).meta["undated"] == "file order"
    assert len(ds.items) == 4 and ds.meta["shared_item_ids"] and ds.meta["ids_in_several_domains"] == 1
    (root / "fr_5core.txt").write_text("userId itemId rate date\nu3 A 2.0 2019-01-01\n")
    with pytest.raises(DataError, match="de_5core.txt:1: no date column, while fr have one"):
        load_dataset(f"xmarket:{root}", tmp_path, progress=False)


# --- 5. --dataset xmarket --data-dir D reads what --dataset D reads ----------------------------------


@pytest.mark.parametrize("layout", ["5-core", "wsdm"])
def test_xmarket_with_a_data_dir_accepts_the_cross_market_layouts(tmp_path, layout):
    root = tmp_path / "d"
    if layout == "5-core":
        for market in ("de", "fr"):
            (root / market / "Electronics").mkdir(parents=True)
            (root / market / "Electronics" / f"{market}_5core.txt").write_text(
                "userId itemId rate date\nu1 A 4.0 2019-01-02\nu2 B 5.0 2019-01-03\n")
    else:
        write_tsv(root / "s1_5core.tsv", S1)
        write_tsv(root / "t2.tsv", T1)
    assert real_xmarket_present(root, "us/Books,us/Electronics,us/Cell_Phones_and_Accessories")
    suite_default = "us/Books,us/Electronics,us/Cell_Phones_and_Accessories"
    via_xmarket = load_dataset("xmarket", root, domains=suite_default, progress=False)
    via_dir = load_dataset(f"xmarket:{root}", tmp_path, progress=False)
    assert via_xmarket.fingerprint == via_dir.fingerprint and via_xmarket.items.domains == via_dir.items.domains
    for spec in ("xmarket", str(root)):
        res = _stats(spec, root)
        assert res.returncode == 0 and "not the paper's XMarket" in res.stdout, res.stderr
    with pytest.raises(DataError, match="found"):
        load_dataset("xmarket", root, domains="zz", progress=False)


def _stats(spec: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", "data", "stats", "--dataset", spec, "--data-dir",
                           str(data_dir)], capture_output=True, text=True, cwd=ROOT, timeout=120)
