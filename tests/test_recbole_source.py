"""RecBole atomic files: the bundled MovieLens-100k offline, and small hand-written datasets."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.recbole_source import bundled_dir, load_recbole
from benchmark.data.sources import load_dataset

needs_recbole = pytest.mark.skipif(
    bundled_dir() is None or not (bundled_dir() / "ml-100k").is_dir(),
    reason="recbole's ml-100k not installed",
)


@needs_recbole
def test_bundled_ml100k_loads_offline_with_ratings_and_titles():
    ds = load_recbole("ml-100k", progress=False)
    x, it = ds.interactions, ds.items
    assert (x.n_users, len(it), len(x)) == (943, 1682, 100000)
    assert ds.name == "recbole:ml-100k" and not ds.synthetic and it.domains == ("ml-100k",)
    # first line of ml-100k.inter: 196 242 3 881250949
    assert x.user_ids[x.user[0]] == "196" and it.source_id[x.item[0]] == "242"
    assert x.rating[0] == 3.0 and x.day[0] == 881250949 // 86400 and x.line[0] == 0
    assert it.title[0] == "Toy Story" and it.categories[0] == ("Animation", "Children's", "Comedy")
    assert set(np.unique(x.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(ds.fingerprint) == 64 and load_recbole("ml-100k", progress=False).fingerprint == ds.fingerprint


@needs_recbole
def test_domain_field_takes_the_first_token():
    ds = load_recbole("ml-100k", domain_field="class", progress=False)
    it = ds.items
    assert "Animation" in it.domains and "Drama" in it.domains
    assert it.domains[it.domain[0]] == "Animation"  # Toy Story: "Animation Children's Comedy"
    assert np.bincount(it.domain, minlength=len(it.domains)).sum() == 1682
    assert ds.fingerprint != load_recbole("ml-100k", progress=False).fingerprint


@needs_recbole
def test_registry_name_resolves_to_the_bundled_dataset(tmp_path):
    ds = load_dataset("recbole:ml-100k", tmp_path, progress=False)
    assert len(ds.interactions) == 100000


def test_a_directory_with_only_an_inter_file_loads_id_only(tmp_path):
    d = tmp_path / "toy"
    d.mkdir()
    (d / "toy.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\nu1\ti9\t86400\nu2\ti9\t172800.5\nu1\ti3\t0\n"
    )
    ds = load_recbole(str(d), progress=False)
    assert ds.items.title is None and ds.items.source_id.tolist() == ["i9", "i3"]
    assert ds.interactions.day.tolist() == [1, 2, 0]
    assert np.isnan(ds.interactions.rating).all()


def test_items_follow_the_item_file_and_unrated_items_are_dropped(tmp_path):
    d = tmp_path / "shop"
    d.mkdir()
    (d / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\nu1\tb\t5\nu2\tz\t4\nu2\ta\t3\n"
    )
    (d / "shop.item").write_text(
        "item_id:token\ttitle:token_seq\tcategories:token_seq\n"
        'a\tA "quoted" title\tkitchen tools\nb\tB title\tgarden\nc\tnever rated\tx\n'
    )
    ds = load_recbole(str(d), domain_field="categories", progress=False)
    it = ds.items
    assert it.source_id.tolist() == ["a", "b", "z"]  # .item order, then .inter-only items
    assert it.title.tolist() == ['A "quoted" title', "B title", ""]
    assert it.domains == ("garden", "kitchen", "unknown")
    assert ds.meta["items_without_interactions"] == 1 and ds.meta["items_without_item_row"] == 1
    assert it.source_id[ds.interactions.item].tolist() == ["b", "z", "a"]
