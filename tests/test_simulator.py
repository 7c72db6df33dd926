"""xmarket-sim writes XMarket's raw formats (methods.md 1.3) with the planted statistics of
spec/twin.md; tiny preset only, so the whole file runs in a few seconds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmark.data import sim_behaviour, sim_config, sim_images, simulator
from benchmark.errors import ConfigError, DataError

DOMAINS = ("Books", "Electronics", "Cell_Phones_and_Accessories")
META_KEYS = [
    "asin",
    "title",
    "averageRating",
    "ratingCount",
    "amazon_badge",
    "ratingDist",
    "ratingByFeature",
    "price",
    "imgUrl",
    "related",
    "productDetails",
    "sellerPage",
    "categories",
    "description",
    "overviewFeatures",
    "features",
    "reviewFilters",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return simulator.generate(tmp_path_factory.mktemp("sim") / "xmarket-sim", "tiny", seed=0, progress=False)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _ratings(root: Path, name: str, typed: bool = True) -> pd.DataFrame:
    # XMarket's official reader (methods.md 1.3), plus dtype=str for the ids when typed.
    return pd.read_csv(
        root / "us" / name / f"ratings_us_{name}.txt.gz",
        compression="gzip",
        header=None,
        sep=" ",
        quotechar='"',
        names=["userId", "itemId", "rate", "date"],
        dtype={"itemId": str} if typed else None,
    )


def _meta(root: Path, name: str) -> list[dict]:
    with gzip.open(root / "us" / name / f"metadata_us_{name}.json.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_unknown_scale_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tiny, small, paper"):
        simulator.generate(tmp_path / "x", "huge")
    assert not (tmp_path / "x").exists()


def test_layout_and_marker(tiny):
    marker = json.loads((tiny / "SIMULATED.json").read_text())
    assert marker["synthetic"] is True and marker["generator"] == "xmarket-sim" and marker["version"] == 2
    assert marker["scale"] == "tiny" and marker["seed"] == 0
    assert set(marker["params"]) == {f.name for f in dataclasses.fields(sim_config.SimConfig)}
    for name in DOMAINS:
        assert (tiny / "us" / name / f"ratings_us_{name}.txt.gz").is_file()
        assert (tiny / "us" / name / f"metadata_us_{name}.json.gz").is_file()
    assert not list(tiny.parent.glob(".*tmp*"))


def test_ratings_parse_in_xmarket_format(tiny):
    users_by_file = []
    for name in DOMAINS:
        raw = gzip.decompress((tiny / "us" / name / f"ratings_us_{name}.txt.gz").read_bytes()).decode("ascii")
        lines = raw.splitlines()
        assert lines and all(len(line.split(" ")) == 4 for line in lines)  # no header, 4 columns
        df = _ratings(tiny, name)
        assert len(df) == len(lines)
        untyped = _ratings(tiny, name, typed=False)  # the official call exactly: ids stay strings
        assert untyped["itemId"].equals(df["itemId"])
        assert df["userId"].str.fullmatch(r"A[A-Z0-9]{27}").all()
        if name == "Books":  # ISBN-10s with a valid check digit ('X' = 10)
            assert df["itemId"].str.fullmatch(r"\d{9}[\dX]").all() and df["itemId"].str.startswith("0").any()
            for asin in df["itemId"].unique():
                assert sum((i + 1) * int(c) for i, c in enumerate(asin[:9])) % 11 == "0123456789X".index(
                    asin[9]
                )
        else:
            assert df["itemId"].str.fullmatch(r"B0[A-Z0-9]{8}").all()
        assert df["rate"].dtype.kind == "i" and df["rate"].between(1, 5).all()  # written as integers
        assert all(dt.date.fromisoformat(d) for d in df["date"].unique())
        assert not df.duplicated(["userId", "itemId"]).any()  # one rating per user and item
        assert not df["date"].is_monotonic_increasing  # real files are not sorted by date
        users_by_file.append(set(df["userId"]))
    assert users_by_file[0] & users_by_file[1]  # Amazon-wide ids: the same user in two domains


def test_metadata_matches_the_official_sample(tiny):
    n_img = n = 0
    for name in DOMAINS:
        records = _meta(tiny, name)
        asins = {r["asin"] for r in records}
        assert set(_ratings(tiny, name)["itemId"]) <= asins
        for r in records:
            n += 1
            assert list(r) == META_KEYS
            assert isinstance(r["categories"], list) and all(isinstance(c, str) for c in r["categories"])
            assert r["title"] and isinstance(r["description"], str) and isinstance(r["features"], list)
            assert re.fullmatch(r"(\$\d+\.\d\d)?", r["price"])
            assert set(r["related"]) == {
                "sponsored",
                "alsoBought",
                "alsoViewed",
                "boughtTogether",
                "compared",
            }
            if r["imgUrl"] == []:
                continue
            n_img += 1
            sizes = json.loads(r["imgUrl"])  # a JSON-encoded string of {url: [w, h]}
            assert isinstance(r["imgUrl"], str) and len(sizes) == 2
            big = max(sizes, key=lambda u: sizes[u][0] * sizes[u][1])
            assert big == f"images/{r['asin']}.png" and (tiny / big).is_file()  # relative to the dataset: relocatable
            assert next(iter(sizes)) != big  # the first key is not the largest: loaders must choose
    assert 0.2 < 1 - n_img / n < 0.4  # ~30 % of items without an image
    assert len(list((tiny / "images").glob("*.png"))) == n_img


def test_same_day_rows_stay_in_one_domain(tiny):
    df = pd.concat([_ratings(tiny, name).assign(domain=d) for d, name in enumerate(DOMAINS)])
    per_day = df.groupby(["userId", "date"])["domain"].nunique()
    assert (per_day == 1).all()  # so (date, file line) order recovers the planted walk
    assert (df.groupby(["userId", "date"]).size() > 1).any()  # and same-day ties exist


def test_planted_statistics(tiny):
    s = simulator.measured_stats(tiny)
    assert s["users"] == sim_config.PRESETS["tiny"].n_users
    shares = s["users_by_n_domains"]
    for k, target in ((1, 0.659), (2, 0.3035), (3, 0.0375)):
        assert abs(shares[k] - target) < 0.02
    assert 0.06 < s["tail50_interaction_share"] < 0.17  # XMarket: 10.9 %
    assert 4.5 < s["mean_seq_len"] < 7.0  # XMarket: ~5.66
    for name, target in zip(DOMAINS, (0.589, 0.250, 0.161), strict=True):
        assert abs(s["domain_item_share"][name] - target) < 0.04
    assert s["rating_share"][4] + s["rating_share"][5] > 0.6
    assert s["same_day_share_of_consecutive_pairs"] > 0.1


def test_deterministic_per_seed(tiny, tmp_path):
    again = simulator.generate(tiny, "tiny", seed=0, progress=False)  # regenerate in place
    first = _digest(again)
    assert simulator.generate(tiny, "tiny", seed=0, progress=False) == again
    assert _digest(again) == first
    elsewhere = simulator.generate(tmp_path / "elsewhere" / "twin", "tiny", seed=0, progress=False)
    assert _digest(elsewhere) == first  # no path inside the files: a twin generated elsewhere is byte-identical
    other = simulator.generate(tmp_path / "other", "tiny", seed=1, progress=False)
    name = "us/Books/ratings_us_Books.txt.gz"
    assert _digest(other)[name] != first[name]


def test_failure_leaves_no_partial_output(tiny, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(sim_images, "write_pngs", boom)
    with pytest.raises(RuntimeError, match="render failed"):
        simulator.generate(tmp_path / "fresh", "tiny", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither out_dir nor the temp sibling
    before = _digest(tiny)
    with pytest.raises(RuntimeError):
        simulator.generate(tiny, "tiny", seed=3, progress=False)
    assert _digest(tiny) == before  # an earlier complete output survives a failed regeneration


def test_refuses_to_replace_foreign_data(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "ratings.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        simulator.generate(tmp_path / "real", "tiny", progress=False)
    assert (tmp_path / "real" / "ratings.txt").read_text() == "keep me"


def test_presets_are_valid_without_generating():
    assert list(sim_config.PRESETS) == ["tiny", "small", "paper"]
    for cfg in sim_config.PRESETS.values():
        lam = sim_behaviour._lomax_scale(cfg)
        assert lam > 0
    paper = sim_config.PRESETS["paper"]
    assert paper.n_users == 2_650_000 and 140_000 <= paper.n_items <= 145_000
