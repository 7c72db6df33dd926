"""The XMarket loader on the hand-written fixture (datasets/fixtures/xmarket-mini), and the registry."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from benchmark.data import xmarket_ratings
from benchmark.data.sources import list_datasets, load_dataset, sim_dir
from benchmark.data.xmarket import (
    DEFAULT_DOMAINS,
    load_xmarket,
    parse_domains,
    xmarket_files_present,
)
from benchmark.data.xmarket_ratings import factorize_ids
from benchmark.errors import ConfigError, DataError

FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "xmarket-mini"


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    dst = tmp_path / "xmarket-mini"
    shutil.copytree(FIXTURE, dst)
    return dst


def write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def test_fixture_loads_with_metadata_and_drops_items_without_title_or_metadata():
    ds = load_xmarket(FIXTURE, progress=False)
    assert ds.items.domains == ("Books", "Electronics", "Cell_Phones_and_Accessories")
    assert len(ds.items) == 11 and ds.interactions.n_users == 5 and len(ds.interactions) == 16
    assert ds.meta["raw_items"] == {"Books": 7, "Electronics": 3, "Cell_Phones_and_Accessories": 3}
    assert ds.meta["dropped_items_no_metadata"] == 1  # 0553418025
    assert ds.meta["dropped_items_empty_title"] == 1  # 0735219095
    assert ds.meta["dropped_interactions"] == 2
    assert "0553418025" not in set(ds.items.source_id) and "0735219095" not in set(ds.items.source_id)
    assert all(t for t in ds.items.title)
    assert ds.synthetic is False


def test_asin_in_two_categories_is_two_items_and_the_collision_is_counted():
    ds = load_xmarket(FIXTURE, progress=False)
    rows = np.flatnonzero(ds.items.source_id == "B00ZV9PXP2")
    assert len(rows) == 2
    assert sorted(ds.items.domains[d] for d in ds.items.domain[rows]) == [
        "Cell_Phones_and_Accessories",
        "Electronics",
    ]
    assert ds.meta["asin_collisions"] == 1
    assert ds.items.title[rows[0]] != ds.items.title[rows[1]]  # each domain's own metadata


def test_interaction_columns_follow_the_file_order_and_dates_are_days_since_epoch():
    x = load_xmarket(FIXTURE, progress=False).interactions
    assert (x.user.dtype, x.item.dtype, x.day.dtype, x.rating.dtype, x.line.dtype) == (
        np.int32, np.int32, np.int32, np.float32, np.int64,
    )  # fmt: skip
    # global original order: Books lines 0-8 (6 and 7 dropped), Electronics 9-13, Cell 14-17
    assert x.line.tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    assert x.day[0] == (np.datetime64("2015-09-29") - np.datetime64("1970-01-01")).astype(int)
    assert x.day[0] == x.day[3]  # a same-day tie, kept in file order
    assert x.rating[:3].tolist() == [5.0, 4.0, 5.0]  # '5.0' parses like '5'
    assert x.user_ids.dtype.kind == "S" and x.user_ids[0] == b"AFXKARXBL3X3LO5GNN4XAXC7XMPQ"
    assert not x.user.flags.writeable


def test_metadata_fields_parse_python_literals_json_lists_prices_and_images():
    it = load_xmarket(FIXTURE, progress=False).items
    by = {a: i for i, a in enumerate(it.source_id) if it.domain[i] == 0}
    road, sapiens, kafka, hunger = by["0061806765"], by["0143127748"], by["1400079276"], by["0439023483"]
    assert it.title[road] == "The Road to Character"  # Python dict literal line
    assert it.categories[road] == ("Politics & Social Sciences", "Philosophy")
    assert it.price[road] == np.float32(12.99) and np.isnan(it.price[hunger])
    assert it.price[kafka] == 1299.0 and it.price[sapiens] == np.float32(9.99)
    assert np.isnan(it.avg_rating[kafka]) and it.avg_rating[hunger] == np.float32(4.8)
    assert it.description[sapiens] == "A brief history of humankind."  # from a list-per-line record
    assert it.image_url[road].endswith("51Ab1XyZ2L._SX331_.png")  # largest area of the imgUrl map
    assert it.image_url[road].startswith("file:///")  # relative paths resolve against the data dir
    assert it.image_url[by["0316769177"]] == ""
    charger = int(np.flatnonzero((it.source_id == "B00ZV9PXP2") & (it.domain == 1))[0])
    assert it.features[charger] == "Fast charging Foldable plug"
    assert it.image_path is None


def test_auto_metadata_falls_back_to_id_only_with_a_logged_note(mini, caplog):
    for p in mini.rglob("metadata_*.json.gz"):
        p.unlink()
    with caplog.at_level(logging.WARNING):
        ds = load_xmarket(mini, progress=False)
    assert ds.items.title is None and not ds.items.has_content
    assert len(ds.items) == 13 and len(ds.interactions) == 18 and ds.interactions.n_users == 6
    assert "ID-only" in caplog.text
    with pytest.raises(DataError, match="metadata requested but missing"):
        load_xmarket(mini, metadata=True, progress=False)


def test_metadata_false_ignores_existing_metadata():
    ds = load_xmarket(FIXTURE, metadata=False, progress=False)
    assert ds.items.title is None and len(ds.interactions) == 18


def test_parse_domains_accepts_specs_and_names_valid_choices():
    assert parse_domains("us/Books, us/Electronics") == (("us", "Books"), ("us", "Electronics"))
    assert parse_domains("Books") == (("us", "Books"),)
    with pytest.raises(ConfigError, match=r"unknown XMarket market 'xx'.*\bus\b"):
        parse_domains("xx/Books")
    with pytest.raises(ConfigError, match=r"unknown XMarket category 'Bookz'.*Electronics"):
        parse_domains("us/Bookz")


def test_subset_of_domains_and_several_markets_are_labelled(mini):
    ds = load_xmarket(mini, domains=parse_domains("us/Electronics"), progress=False)
    assert ds.items.domains == ("Electronics",) and len(ds.interactions) == 5
    src = mini / "us" / "Books"
    for kind in ("ratings", "metadata"):
        ext = "txt" if kind == "ratings" else "json"
        shutil.copy(src / f"{kind}_us_Books.{ext}.gz", mini / f"{kind}_uk_Books.{ext}.gz")  # flat layout
    ds = load_xmarket(mini, domains=(("us", "Books"), ("uk", "Books")), progress=False)
    assert ds.items.domains == ("us/Books", "uk/Books")
    assert ds.meta["asin_collisions"] == 7  # every raw Books ASIN is in both markets
    assert ds.meta["asin_collisions_kept"] == 5 and len(ds.items) == 10


def test_files_present_checks_every_ratings_file(mini):
    assert xmarket_files_present(mini) and xmarket_files_present(FIXTURE, DEFAULT_DOMAINS)
    (mini / "us" / "Electronics" / "ratings_us_Electronics.txt.gz").unlink()
    assert not xmarket_files_present(mini)
    assert not xmarket_files_present(mini / "nowhere")


def test_simulated_marker_makes_the_dataset_synthetic(mini):
    (mini / "SIMULATED.json").write_text(json.dumps({"scale": "tiny", "seed": 3}))
    ds = load_xmarket(mini, progress=False)
    assert ds.synthetic is True and ds.meta["sim_scale"] == "tiny" and ds.meta["sim_seed"] == 3


def test_fingerprint_is_stable_and_bound_to_content_and_options(mini):
    a = load_xmarket(mini, progress=False).fingerprint
    assert load_xmarket(mini, progress=False).fingerprint == a
    assert load_xmarket(mini, metadata=False, progress=False).fingerprint != a
    p = mini / "us" / "Books" / "ratings_us_Books.txt.gz"
    with gzip.open(p, "rt") as f:
        text = f.read()
    write_gz(p, text.replace("2014-03-02", "2014-03-03"))
    assert load_xmarket(mini, progress=False).fingerprint != a


def test_cache_round_trips_the_dataset_and_is_written_atomically(mini, tmp_path):
    cache = tmp_path / "cache"
    first = load_xmarket(mini, cache_dir=cache, progress=False)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].endswith(".npz")  # no temp file left behind
    assert files[1] == files[0] + ".sha256"  # its content checksum, checked on every load
    second = load_xmarket(mini, cache_dir=cache, progress=False)
    assert "from_cache" in second.meta and "from_cache" not in first.meta
    assert second.fingerprint == first.fingerprint and second.items.domains == first.items.domains
    for col in ("user", "item", "day", "rating", "line", "user_ids"):
        np.testing.assert_array_equal(getattr(second.interactions, col), getattr(first.interactions, col))
    for col in ("source_id", "domain", "title", "categories", "description", "features", "image_url"):
        assert getattr(second.items, col).tolist() == getattr(first.items, col).tolist()
    np.testing.assert_array_equal(second.items.price, first.items.price)
    assert second.meta["dropped_interactions"] == first.meta["dropped_interactions"]


def test_registry_lists_the_sources_and_rejects_unknown_names(tmp_path):
    names = [n for n, _ in list_datasets()]
    assert {"xmarket", "xmarket-sim", "recbole:ml-100k"} <= set(names)
    with pytest.raises(ConfigError, match="unknown dataset 'movielens'.*xmarket-sim"):
        load_dataset("movielens", tmp_path)


def test_load_dataset_xmarket_uses_the_xmarket_subfolder_caches_and_fetches_images(tmp_path):
    root = tmp_path / "data" / "xmarket"
    shutil.copytree(FIXTURE, root)
    ds = load_dataset("xmarket", tmp_path / "data", progress=False)
    assert ds.name == "xmarket" and len(ds.interactions) == 16 and not ds.synthetic
    assert len(list((root / ".cache" / "parsed").glob("*.npz"))) == 1
    it = ds.items
    assert int((it.image_url != "").sum()) == 5 and int((it.image_path != "").sum()) == 4
    assert all(Path(p).is_file() for p in it.image_path if p)
    missing = (root / ".cache" / "images" / "missing_images.tsv").read_text().splitlines()
    assert missing[0] == "asin\turl\treason" and len(missing) == 2
    assert missing[1].startswith("B01N9YOF3R\t") and missing[1].endswith("file not found")
    again = load_dataset("xmarket", tmp_path / "data", domains="us/Electronics", progress=False)
    assert again.items.domains == ("Electronics",) and len(again.interactions) == 5
    with pytest.raises(DataError, match="XMarket files not found"):
        load_dataset("xmarket", tmp_path / "empty", progress=False)


def test_xmarket_sim_loads_an_existing_twin_directory_as_synthetic(tmp_path):
    out = sim_dir(tmp_path, "tiny", 7)
    assert out == tmp_path / "xmarket-sim" / "tiny-seed7"
    shutil.copytree(FIXTURE, out)
    (out / "SIMULATED.json").write_text(json.dumps({"scale": "tiny", "seed": 7}))
    ds = load_dataset("xmarket-sim", tmp_path, scale="tiny", seed=7, domains="us/Books", progress=False)
    assert ds.name == "xmarket-sim" and ds.synthetic and ds.meta["sim_seed"] == 7


def test_factorize_ids_matches_pandas_on_chunked_variable_length_ids():
    rng = np.random.default_rng(0)
    pool = ["".join(rng.choice(list("ABCXYZ019é"), size=rng.integers(1, 30))) for _ in range(300)]
    ids = [pool[i] for i in rng.integers(0, len(pool), 5000)]
    chunks = [pa.chunked_array([pa.array(ids[:1000]), pa.array([], type=pa.string()), pa.array(ids[1000:2500])]),
              pa.array(ids[2500:]).slice(0)]  # fmt: skip
    codes, uniq = factorize_ids(chunks)
    ref_codes, ref_uniq = pd.factorize(np.array(ids, dtype=object))
    np.testing.assert_array_equal(codes, ref_codes)
    assert [u.decode("utf-8") for u in uniq] == list(ref_uniq)


def test_the_strict_reader_gives_the_same_columns_as_the_fast_one(monkeypatch):
    fast = load_xmarket(FIXTURE, progress=False)
    monkeypatch.setattr(xmarket_ratings, "_read_ratings_fast", lambda path: None)
    strict = load_xmarket(FIXTURE, progress=False)
    for col in ("user", "item", "day", "rating", "line", "user_ids"):
        np.testing.assert_array_equal(getattr(strict.interactions, col), getattr(fast.interactions, col))
    assert strict.items.source_id.tolist() == fast.items.source_id.tolist()


def test_dates_without_zero_padding_fall_back_to_the_strict_reader(tmp_path):
    write_gz(
        tmp_path / "us" / "Books" / "ratings_us_Books.txt.gz",
        "U1 0061806765 5 2015-9-1\nU2 0061806765 4 2015-09-02\n",
    )
    x = load_xmarket(tmp_path, (("us", "Books"),), progress=False).interactions
    assert x.day.tolist() == [16679, 16680] and x.user_ids.tolist() == [b"U1", b"U2"]


def test_factorize_ids_survives_hash_collisions(monkeypatch):
    monkeypatch.setattr(xmarket_ratings, "_hash_rows", lambda mat, lens: np.zeros(len(lens), dtype=np.uint64))
    codes, uniq = factorize_ids([pa.array(["b", "a", "b", "c"])])
    assert codes.tolist() == [0, 1, 0, 2] and uniq.tolist() == [b"b", b"a", b"c"]


def test_xmarket_sim_is_generated_on_first_use_and_loaded_by_the_same_loader(tmp_path):
    import benchmark.data.simulator  # noqa: F401 - an import error here is a failure, not a skip

    ds = load_dataset("xmarket-sim", tmp_path, scale="tiny", seed=1, progress=False)
    out = sim_dir(tmp_path, "tiny", 1)
    assert (out / "SIMULATED.json").is_file() and ds.synthetic and ds.meta["sim_scale"] == "tiny"
    assert ds.items.domains == ("Books", "Electronics", "Cell_Phones_and_Accessories")
    assert ds.items.has_content and ds.items.has_images
    again = load_dataset("xmarket-sim", tmp_path, scale="tiny", seed=1, progress=False)
    assert again.fingerprint == ds.fingerprint and "from_cache" in again.meta
