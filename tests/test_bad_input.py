"""Bad input is a one-line DataError naming the file and line; the CLI maps it to exit code 2."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from benchmark.data.recbole_source import load_recbole
from benchmark.data.xmarket import load_xmarket
from benchmark.errors import BenchmarkError, ConfigError, DataError

FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "xmarket-mini"
BOOKS = (("us", "Books"),)
U1, U2 = "AFXKARXBL3X3LO5GNN4XAXC7XMPQ", "AGZ3XH5QHYJ5A7WBOQPGB4JRXG2Q"


def ratings_dir(tmp_path: Path, text: str | bytes, raw: bool = False) -> tuple[Path, Path]:
    """A data dir holding only us/Books ratings with ``text`` (gzipped unless ``raw``)."""
    path = tmp_path / "us" / "Books" / "ratings_us_Books.txt.gz"
    path.parent.mkdir(parents=True)
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data if raw else gzip.compress(data))
    return tmp_path, path


def expect(exc: pytest.ExceptionInfo, path: Path, line: int | None, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}: " if line is not None else f"{path}: "), msg
    for w in words:
        assert w in msg, msg
    assert isinstance(exc.value, BenchmarkError) and exc.value.exit_code == 2


GOOD = f"{U1} 0061806765 5 2015-09-29\n{U2} 0316769177 4 2016-01-12\n"


def test_good_minimal_file_loads(tmp_path):
    d, _ = ratings_dir(tmp_path, GOOD)
    assert len(load_xmarket(d, BOOKS, progress=False).interactions) == 2


def test_truncated_gzip_names_the_file_and_the_first_incomplete_line(tmp_path):
    body = "".join(f"{U1} {i:010d} 5 2015-09-29\n" for i in range(20000)).encode()
    blob = gzip.compress(body)
    d, path = ratings_dir(tmp_path, blob[: len(blob) // 2], raw=True)
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    line = exc.value.line
    assert line is not None and 1 < line <= 20000
    expect(exc, path, line, "truncated or corrupt gzip")


def test_a_file_that_is_not_gzip(tmp_path):
    d, path = ratings_dir(tmp_path, GOOD, raw=True)
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, None, "not a gzip file")


def test_extra_column(tmp_path):
    d, path = ratings_dir(tmp_path, GOOD + f"{U1} 0439023483 3 2015-09-29 extra\n")
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 3, "Expected 4 fields")


def test_extra_column_on_the_first_line(tmp_path):
    d, path = ratings_dir(tmp_path, f"{U1} 0439023483 3 2015-09-29 extra\n" + GOOD)
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 1, "5 columns, expected 4")


def test_missing_column(tmp_path):
    d, path = ratings_dir(tmp_path, GOOD + f"{U1} 0439023483 3\n")
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 3, "missing date")


def test_missing_rating_column_is_reported_at_its_line(tmp_path):
    d, path = ratings_dir(tmp_path, GOOD + f"{U1} 0439023483\n")
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 3, "missing date")


def test_unparseable_rating(tmp_path):
    d, path = ratings_dir(tmp_path, GOOD + f"{U1} 0439023483 five 2015-09-29\n")
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 3, "unparseable rating 'five'")


def test_unparseable_date(tmp_path):
    d, path = ratings_dir(tmp_path, f"{U1} 0439023483 3 29/09/2015\n" + GOOD)
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 1, "unparseable date '29/09/2015'", "YYYY-MM-DD")


def test_impossible_date(tmp_path):
    d, path = ratings_dir(tmp_path, GOOD + f"{U1} 0439023483 3 2015-13-45\n")
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 3, "2015-13-45")


def test_empty_ratings_file(tmp_path):
    d, path = ratings_dir(tmp_path, "")
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, None, "ratings file is empty")


def test_missing_data_directory(tmp_path):
    with pytest.raises(DataError) as exc:
        load_xmarket(tmp_path / "nope", progress=False)
    expect(exc, tmp_path / "nope", None, "does not exist")


def test_missing_ratings_file_for_a_domain(tmp_path):
    d, _ = ratings_dir(tmp_path, GOOD)
    with pytest.raises(DataError, match="missing XMarket ratings file.*ratings_us_Electronics.txt.gz"):
        load_xmarket(d, (("us", "Books"), ("us", "Electronics")), progress=False)


def test_unknown_domain_is_a_config_error_listing_the_valid_ones(tmp_path):
    d, _ = ratings_dir(tmp_path, GOOD)
    with pytest.raises(ConfigError, match="unknown XMarket category 'Bookz'.*Books") as exc:
        load_xmarket(d, (("us", "Bookz"),), progress=False)
    assert exc.value.exit_code == 2
    with pytest.raises(ConfigError, match="unknown XMarket market 'zz'"):
        load_xmarket(d, "zz/Books", progress=False)


def meta_dir(tmp_path: Path, lines: list[str] | bytes) -> tuple[Path, Path]:
    d, _ = ratings_dir(tmp_path, GOOD)
    path = d / "us" / "Books" / "metadata_us_Books.json.gz"
    path.write_bytes(lines if isinstance(lines, bytes) else gzip.compress("\n".join(lines).encode()))
    return d, path


def test_malformed_metadata_line(tmp_path):
    ok = '{"asin": "0061806765", "title": "A"}'
    d, path = meta_dir(tmp_path, [ok, "{'asin': '0316769177', 'title': 'B'", ok])
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 2, "malformed metadata line")


def test_metadata_record_without_asin(tmp_path):
    d, path = meta_dir(tmp_path, ['{"asin": "0061806765", "title": "A"}', '{"title": "no asin"}'])
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    expect(exc, path, 2, "'asin'")


def test_truncated_metadata_gzip(tmp_path):
    lines = [f'{{"asin": "{i:010d}", "title": "t{i}", "description": "{"x" * 50}"}}' for i in range(5000)]
    blob = gzip.compress("\n".join(lines).encode())
    d, path = meta_dir(tmp_path, blob[: len(blob) // 2])
    with pytest.raises(DataError) as exc:
        load_xmarket(d, BOOKS, progress=False)
    assert exc.value.line is not None and exc.value.line > 1
    expect(exc, path, exc.value.line, "truncated or corrupt gzip")


def test_a_malformed_simulated_marker(tmp_path):
    d, _ = ratings_dir(tmp_path, GOOD)
    (d / "SIMULATED.json").write_text("{scale: tiny")
    with pytest.raises(DataError, match="SIMULATED.json: malformed JSON"):
        load_xmarket(d, BOOKS, progress=False)


def test_a_failed_parse_leaves_no_cache_behind(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(FIXTURE, d)
    path = d / "us" / "Electronics" / "ratings_us_Electronics.txt.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"broken line\n"))
    cache = tmp_path / "cache"
    with pytest.raises(DataError):
        load_xmarket(d, cache_dir=cache, progress=False)
    assert not cache.exists() or not any(cache.iterdir())


def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    good = load_xmarket(FIXTURE, cache_dir=cache, progress=False)
    (npz,) = cache.glob("*.npz")
    npz.write_bytes(b"garbage")
    again = load_xmarket(FIXTURE, cache_dir=cache, progress=False)
    assert "from_cache" not in again.meta and len(again.interactions) == len(good.interactions)


def write_recbole(tmp_path: Path, inter: str, item: str | None = None) -> Path:
    d = tmp_path / "toy"
    d.mkdir()
    (d / "toy.inter").write_text(inter)
    if item is not None:
        (d / "toy.item").write_text(item)
    return d


def test_recbole_header_without_types(tmp_path):
    d = write_recbole(tmp_path, "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataError) as exc:
        load_recbole(str(d), progress=False)
    expect(exc, d / "toy.inter", 1, "bad header column 'user_id'")


def test_recbole_unparseable_rating(tmp_path):
    d = write_recbole(tmp_path, "user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\tgood\n")
    with pytest.raises(DataError) as exc:
        load_recbole(str(d), progress=False)
    expect(exc, d / "toy.inter", 3, "unparseable rating 'good'")


def test_recbole_missing_item_field_and_unknown_dataset(tmp_path):
    d = write_recbole(tmp_path, "user_id:token\tmovie:token\n1\t2\n")
    with pytest.raises(DataError, match="no 'item_id' field"):
        load_recbole(str(d), progress=False)
    with pytest.raises(DataError, match="RecBole dataset 'no-such-set' not found"):
        load_recbole("no-such-set", data_dir=tmp_path, progress=False)


def test_recbole_row_with_more_fields_than_the_header(tmp_path):
    d = write_recbole(tmp_path, "user_id:token\titem_id:token\trating:float\n1\t2\t3\textra\n1\t3\t4\n")
    with pytest.raises(DataError) as exc:
        load_recbole(str(d), progress=False)
    expect(exc, d / "toy.inter", 2, "4 columns, the header has 3")
