"""fetch_xmarket against a real HTTP server on 127.0.0.1 (serving the fixture), and fetch_images."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from benchmark.data.fetch import fetch_xmarket, xmarket_relpath
from benchmark.data.images import MISSING_TSV, best_image_url, fetch_images
from benchmark.data.model import Items
from benchmark.data.xmarket import load_xmarket
from benchmark.errors import DataError

FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "xmarket-mini"
BOOKS = (("us", "Books"),)
RATINGS = xmarket_relpath("us", "Books", "ratings")
METADATA = xmarket_relpath("us", "Books", "metadata")


class Server:
    """Serves files under /FULL/<relpath> with HTTP Range support; records every request's Range."""

    def __init__(self, root: Path, honour_range: bool = True):
        self.root, self.honour_range, self.ranges = root, honour_range, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                rel = self.path.removeprefix("/FULL/")
                path = outer.root / rel
                rng = self.headers.get("Range")
                outer.ranges.append((rel, rng))
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/FULL"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = Server(FIXTURE)
    yield s
    s.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_download_writes_the_layout_the_loader_reads(server, tmp_path, capsys):
    fetched = fetch_xmarket(tmp_path, base_url=server.url, progress=False, allow_unverified=True)
    got = fetched.downloaded
    assert len(got) == 6 and all(p.is_file() for p in got) and not fetched.present
    for p in got:
        assert p.read_bytes() == (FIXTURE / p.relative_to(tmp_path)).read_bytes()
    assert not list(tmp_path.rglob("*.part"))
    out = capsys.readouterr().out
    assert f"{RATINGS}: size={(FIXTURE / RATINGS).stat().st_size} sha256={sha(FIXTURE / RATINGS)}" in out
    assert len(load_xmarket(tmp_path, progress=False, metadata=True).interactions) == 16


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    src = (FIXTURE / METADATA).read_bytes()
    part = tmp_path / (METADATA + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(src[:300])
    fetch_xmarket(tmp_path, BOOKS, kinds=("metadata",), base_url=server.url, progress=False, allow_unverified=True)
    assert (tmp_path / METADATA).read_bytes() == src and not part.exists()
    assert server.ranges == [(METADATA, "bytes=300-")]


def test_a_server_ignoring_range_restarts_the_file(tmp_path):
    s = Server(FIXTURE, honour_range=False)
    try:
        part = tmp_path / (RATINGS + ".part")
        part.parent.mkdir(parents=True)
        part.write_bytes(b"stale bytes")
        fetch_xmarket(tmp_path, BOOKS, kinds=("ratings",), base_url=s.url, progress=False, allow_unverified=True)
    finally:
        s.close()
    assert (tmp_path / RATINGS).read_bytes() == (FIXTURE / RATINGS).read_bytes()


def test_a_complete_part_file_is_verified_and_renamed(server, tmp_path):
    part = tmp_path / (RATINGS + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((FIXTURE / RATINGS).read_bytes())
    fetch_xmarket(tmp_path, BOOKS, kinds=("ratings",), base_url=server.url, progress=False, allow_unverified=True)
    assert (tmp_path / RATINGS).is_file() and not part.exists()


def card(tmp_path: Path, size: int | None, sha256: str | None) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump({"files": [{"path": RATINGS, "size": size, "sha256": sha256}]}))
    return path


def test_checksum_mismatch_is_an_error_and_keeps_the_part_file(server, tmp_path):
    data = tmp_path / "data"
    bad = card(tmp_path, None, "0" * 64)
    with pytest.raises(DataError, match="sha256 .* differs from the card's 0000") as exc:
        fetch_xmarket(data, BOOKS, kinds=("ratings",), base_url=server.url, progress=False, allow_unverified=True, card=bad)
    assert "\n" not in str(exc.value)
    assert (data / (RATINGS + ".part")).is_file() and not (data / RATINGS).exists()


def test_matching_checksum_passes_and_a_wrong_size_fails(server, tmp_path):
    size, digest = (FIXTURE / RATINGS).stat().st_size, sha(FIXTURE / RATINGS)
    good = card(tmp_path, size, digest)
    fetch_xmarket(tmp_path / "a", BOOKS, kinds=("ratings",), base_url=server.url, progress=False, allow_unverified=True, card=good)
    assert sha(tmp_path / "a" / RATINGS) == digest
    wrong = card(tmp_path, size + 1, None)
    with pytest.raises(DataError, match=f"size {size} differs from the card's {size + 1}"):
        fetch_xmarket(
            tmp_path / "b", BOOKS, kinds=("ratings",), base_url=server.url, progress=False, allow_unverified=True, card=wrong
        )


def test_files_already_present_are_not_downloaded_again(server, tmp_path):
    fetch_xmarket(tmp_path, BOOKS, kinds=("ratings",), base_url=server.url, progress=False, allow_unverified=True)
    n = len(server.ranges)
    fetch_xmarket(tmp_path, BOOKS, kinds=("ratings",), base_url=server.url, progress=False, allow_unverified=True)
    assert len(server.ranges) == n


def test_a_download_that_is_not_a_whole_gzip_is_not_renamed_into_place(tmp_path):
    src = tmp_path / "src"
    (src / RATINGS).parent.mkdir(parents=True)
    whole = (FIXTURE / RATINGS).read_bytes()
    (src / RATINGS).write_bytes(whole[: len(whole) // 2])  # the server's copy is truncated
    s = Server(src)
    try:
        with pytest.raises(DataError, match="not a complete gzip file"):
            fetch_xmarket(tmp_path / "d", BOOKS, kinds=("ratings",), base_url=s.url, progress=False,
                          allow_unverified=True)
    finally:
        s.close()
    assert not (tmp_path / "d" / RATINGS).exists() and (tmp_path / "d" / (RATINGS + ".part")).is_file()


def test_http_404_names_the_url(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_xmarket(tmp_path, BOOKS, kinds=("reviews",), base_url=server.url, progress=False, allow_unverified=True)


def test_unreachable_host_says_to_copy_the_files(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and now has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError) as exc:
        fetch_xmarket(tmp_path, BOOKS, base_url=f"http://127.0.0.1:{port}/FULL", progress=False, allow_unverified=True)
    msg = str(exc.value)
    assert f"cannot reach 127.0.0.1:{port}" in msg and f"copy the XMarket files to {tmp_path}" in msg
    assert "\n" not in msg


# ------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ([], ""),
        ("", ""),
        (None, ""),
        (
            '{"http://x/a.jpg": [100, 100], "http://x/b.jpg": [300, 200], "http://x/c.jpg": [10, 10]}',
            "http://x/b.jpg",
        ),
        ("{'http://x/a.jpg': [5, 5]}", "http://x/a.jpg"),
        ({"http://x/a.jpg": [1, 1], "http://x/b.jpg": [1, 1]}, "http://x/a.jpg"),  # tie: first key
        ("http://x/plain.jpg", "http://x/plain.jpg"),
        (["http://x/l.jpg"], "http://x/l.jpg"),
        ("{not json", ""),
    ],
)
def test_best_image_url(field, url):
    assert best_image_url(field) == url


def make_items(tmp_path: Path) -> Items:
    pngs = []
    for i, rgb in enumerate([(255, 0, 0), (0, 255, 0)]):
        p = tmp_path / "src" / f"img{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4), rgb).save(p)
        pngs.append(p.as_uri())
    urls = [pngs[0], "", pngs[1], (tmp_path / "src" / "gone.png").as_uri(), pngs[0]]
    return Items(
        domains=("A", "B"),
        source_id=np.array(["X1", "X2", "X3", "X4", "X1"], dtype=object),  # X1 in both domains
        domain=np.array([0, 0, 0, 1, 1], dtype=np.int16),
        image_url=np.array(urls, dtype=object),
    )


def test_fetch_images_caches_file_urls_and_lists_the_missing(tmp_path):
    items = make_items(tmp_path)
    cache = tmp_path / "cache"
    out = fetch_images(items, cache, progress=False, allowed_root=tmp_path)
    paths = out.image_path.tolist()
    assert paths[1] == "" and paths[3] == ""
    assert Path(paths[0]).name == "X1-d0.png" and Path(paths[4]).name == "X1-d1.png"
    assert Path(paths[2]) == cache / "X3.png"
    with Image.open(paths[2]) as im:
        assert im.getpixel((0, 0)) == (0, 255, 0)
    rows = (cache / MISSING_TSV).read_text().splitlines()
    assert rows == ["asin\turl\treason", f"X4\t{items.image_url[3]}\tfile not found"]
    assert not [p for p in cache.iterdir() if p.suffix == ".part"]
    assert out.has_images and items.image_path is None  # a new Items; the input is unchanged


def test_cached_images_are_reused_without_the_source(tmp_path):
    items = make_items(tmp_path)
    first = fetch_images(items, tmp_path / "cache", progress=False, allowed_root=tmp_path)
    for p in (tmp_path / "src").iterdir():
        p.unlink()
    again = fetch_images(items, tmp_path / "cache", progress=False, allowed_root=tmp_path)
    assert again.image_path.tolist() == first.image_path.tolist()


def test_a_file_that_is_not_an_image_is_recorded(tmp_path):
    bogus = tmp_path / "notimage.png"
    bogus.write_text("<html>404</html>")
    items = Items(
        domains=("A",), source_id=np.array(["Z"], dtype=object), domain=np.zeros(1, dtype=np.int16),
        image_url=np.array([bogus.as_uri()], dtype=object),
    )  # fmt: skip
    out = fetch_images(items, tmp_path / "cache", progress=False, allowed_root=tmp_path)
    assert out.image_path.tolist() == [""]
    assert "not an image" in (tmp_path / "cache" / MISSING_TSV).read_text()


def test_an_unreachable_image_host_is_given_up_on_quickly(tmp_path, monkeypatch):
    from benchmark.data import images

    monkeypatch.setattr(images, "_host_refusal", lambda host: "")  # pretend 127.0.0.1 were a public host
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = 80
    items = Items(
        domains=("A",),
        source_id=np.array([f"B{i:09d}" for i in range(n)], dtype=object),
        domain=np.zeros(n, dtype=np.int16),
        image_url=np.array([f"http://127.0.0.1:{port}/img{i}.jpg" for i in range(n)], dtype=object),
    )
    out = fetch_images(items, tmp_path / "cache", progress=False)
    assert (out.image_path == "").all()
    reasons = [r.split("\t")[2] for r in (tmp_path / "cache" / MISSING_TSV).read_text().splitlines()[1:]]
    assert len(reasons) == n and reasons[0].startswith("unreachable")
    assert reasons[-1] == "skipped: image host unreachable"
