"""--dataset cards, the CSV source, XMarket 5-core files, undated data and their bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.cards import dataset_overrides, find_card, resolve_dataset
from benchmark.data.csv_source import load_csv
from benchmark.data.split import build_split
from benchmark.data.xmarket_5core import load_5core

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "datasets" / "fixtures" / "csv-tiny"


def test_card_defaults_fill_the_dataset_section():
    sec = resolve_dataset("recbole:ml-100k")
    assert sec["name"] == "recbole:ml-100k" and sec["domain_field"] == "class" and sec["domains"] is None
    assert "dataset.domain_field=class" in dataset_overrides("recbole:ml-100k", None)
    assert resolve_dataset("csv-tiny", "books")["domains"] == "books"
    assert find_card("csv-tiny")["format"] == "csv"
    # xmarket keeps the suite's domain list unless --domains is given
    assert not any(o.startswith("dataset.domains") for o in dataset_overrides("xmarket-sim", None))


def test_csv_card_loads_with_genre_domains_and_filters():
    from benchmark.data.sources import load_dataset

    ds = load_dataset("csv-tiny", ROOT / ".runs" / "unused", domain_field="genre")
    assert ds.items.domains == ("books", "music") and len(ds.items) <= 30
    # hand check: item i00 is a book (items.csv), so its domain index is 0
    k = list(ds.items.source_id).index("i00")
    assert ds.items.domain[k] == 0 and ds.items.title[k] == "Book number 00"
    books = load_dataset("csv-tiny", ROOT / ".runs" / "unused", domain_field="genre", domains="books")
    assert books.items.domains == ("books",) and set(books.items.source_id) <= {f"i{k:02d}" for k in range(15)}
    first = (FIX / "ratings.csv").read_text().splitlines()[1].split(",")
    assert ds.interactions.day[0] == int(first[3]) // 86400 and ds.interactions.rating[0] == float(first[2])


def test_undated_tsv_is_declared_and_recorded_in_the_split(caplog):
    ds = load_csv(FIX / "undated.tsv")
    assert ds.meta["undated"] == "file order" and not ds.interactions.day.any()
    assert "no dates" in caplog.text
    split = build_split(ds, seed=0)
    assert split.meta["undated"] == "file order"
    from benchmark.inputs import dataset_label

    assert "undated" in dataset_label(ds, None)


def test_xmarket_5core_files_read_back(tmp_path):
    # build 5-core files (header, float ratings) from known rows and read them back, flat and nested
    rows = {"de": [("u1", "A", 4.0, "2019-01-02"), ("u1", "B", 5.0, "2019-01-03"), ("u2", "A", 3.0, "2019-02-01")],
            "fr": [("u1", "A", 2.0, "2019-01-05"), ("u3", "C", 1.0, "2019-03-01")]}
    for layout in ("flat", "nested"):
        root = tmp_path / layout
        for market, rs in rows.items():
            d = root if layout == "flat" else root / market / "Electronics"
            d.mkdir(parents=True, exist_ok=True)
            text = "userId itemId rate date\n" + "".join(f"{u} {i} {r:.1f} {t}\n" for u, i, r, t in rs)
            (d / f"{market}_5core.txt").write_text(text)
        ds = load_5core(root)
        labels = ("de", "fr") if layout == "flat" else ("de/Electronics", "fr/Electronics")
        assert ds.items.domains == labels
        assert len(ds.items) == 4  # A in de and A in fr are two items
        assert len(ds.interactions) == 5 and ds.interactions.n_users == 3
        assert np.allclose(ds.interactions.rating, [4, 5, 3, 2, 1])
        assert ds.interactions.day[0] == (np.datetime64("2019-01-02") - np.datetime64("1970-01-01")).astype(int)
        assert load_5core(root, labels[1]).items.domains == (labels[1],)


def test_5core_from_the_twin(tmp_path):
    """The twin's raw ratings rewritten as a 5-core file round-trip row for row."""
    import gzip

    from benchmark.data.simulator import generate

    twin = generate(tmp_path / "twin", scale="tiny", seed=0, progress=False)
    src = next(twin.glob("us/*/ratings_us_*.txt.gz"))
    lines = gzip.open(src, "rt").read().split("\n")
    lines = [ln for ln in lines if ln]
    out = tmp_path / "fivecore"
    out.mkdir()
    (out / "us_5core.txt").write_text(
        "userId itemId rate date\n" + "".join(f"{u} {i} {float(r):.1f} {d}\n" for u, i, r, d in map(str.split, lines)))
    ds = load_5core(out)
    assert len(ds.interactions) == len(lines) and ds.items.domains == ("us",)
    u, i, r, _ = lines[0].split()
    assert ds.interactions.user_ids[ds.interactions.user[0]] == u
    assert ds.items.source_id[ds.interactions.item[0]] == i and ds.interactions.rating[0] == float(r)


def _bad(tmp_path: Path, card: str) -> subprocess.CompletedProcess:
    (tmp_path / "card.yaml").write_text(card)
    return subprocess.run(
        [sys.executable, "-m", "benchmark", "data", "stats", "--dataset", str(tmp_path / "card.yaml"),
         "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT, timeout=120)


CARD = f"name: bad\nformat: csv\nfile: {FIX / 'ratings.csv'}\nitem_file: {FIX / 'items.csv'}\n"


@pytest.mark.parametrize("extra, expect", [
    ("columns: {{user: user, item: item, rating: score}}\n", "mapped column 'score' (rating) is missing"),
    ("columns: {{user: user, item: item, time: ts}}\ndefaults: {{domain_field: colour}}\n", "domain field 'colour'"),
    ("columns: {{user: user, item: item, time: ts}}\ndefaults: {{domain_field: genre, domains: films}}\n",
     "domain 'films' is empty after filtering"),
])
def test_bad_input_is_one_line_exit_2_nothing_cached(tmp_path, extra, expect):
    res = _bad(tmp_path, CARD + extra.format())
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and expect in err[0], res.stderr
    assert ".csv" in err[0]  # names the file
    assert not (tmp_path / "data" / ".cache").exists()


def test_toy_card_is_labelled_synthetic():
    from benchmark.data.sources import load_dataset

    assert load_dataset("csv-tiny", ROOT / ".runs" / "unused").synthetic


def test_dataset_flags_become_recorded_config():
    from benchmark import registry
    from benchmark.config import load_suite_file, resolve

    suite = load_suite_file(registry.suite_path("xmarket-matching"))
    overrides = dataset_overrides("recbole:ml-100k", "Action,Comedy")
    run = resolve(suite, {"popularity": {}}, scale="tiny", methods=["popularity"], overrides=overrides)[0]
    assert run.dataset["name"] == "recbole:ml-100k" and run.dataset["domains"] == "Action,Comedy"
    assert run.dataset["domain_field"] == "class"
    off = resolve(suite, {"popularity": {}}, methods=["popularity"],
                  overrides=[*overrides, "dataset.domain_field=null"])[0]
    assert "domain_field" not in off.dataset
    plain = resolve(suite, {"popularity": {}}, methods=["popularity"])[0]
    assert "domain_field" not in plain.dataset  # older run keys unchanged
