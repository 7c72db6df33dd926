"""Item features: real encoders (MiniLM, offline descriptor, a tiny local CLIP / BERT), image
masks and the on-disk cache. Nothing is downloaded: every model comes from a local file."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from benchmark.data.model import Items
from benchmark.errors import BenchmarkError, MissingRequirementError
from benchmark.features import (
    compute_features,
    get_image_encoder,
    get_text_encoder,
    list_encoders,
)
from benchmark.features.cache import FeatureCache


class Counting:
    """Wraps a real encoder, counting encode calls (and optionally changing its id)."""

    def __init__(self, inner, id_suffix: str = ""):
        self.inner = inner
        self.id = inner.id + id_suffix
        self.dim = inner.dim
        self.weights_hash = inner.weights_hash
        self.calls = 0

    def encode(self, xs):
        self.calls += 1
        return self.inner.encode(xs)

    def encode_with_mask(self, xs):
        self.calls += 1
        return self.inner.encode_with_mask(xs)


def _draw(path, shape, colour, rng):
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    im = Image.new("RGB", (48, 48), bg)
    r = int(rng.integers(10, 18))
    cx, cy = (int(v) for v in rng.integers(r + 2, 48 - r - 2, 2))
    fill = tuple(int(np.clip(v + rng.integers(-30, 30), 0, 255)) for v in colour)
    draw = ImageDraw.Draw(im)
    (draw.ellipse if shape == "circle" else draw.rectangle)([cx - r, cy - r, cx + r, cy + r], fill=fill)
    im.save(path)
    return str(path)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """15 red circles, 15 blue squares, 15 red squares (48x48 PNG, jittered)."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for k, (shape, colour) in enumerate(
        [("circle", (220, 20, 20)), ("square", (20, 20, 220)), ("square", (220, 20, 20))]
    ):
        for j in range(15):
            paths.append(_draw(root / f"{k}_{j}.png", shape, colour, rng))
            labels.append(k)
    return paths, np.array(labels)


@pytest.fixture(scope="module")
def minilm():
    enc = get_text_encoder("minilm")
    enc.encode(["warm up"])  # loads the shipped model once for the module
    return enc


def _items(image_paths=None, title=True):
    n = 4
    return Items(
        domains=("Books", "Electronics"),
        source_id=np.array([f"i{k}" for k in range(n)], dtype=object),
        domain=np.array([0, 1, 1, 0], dtype=np.int16),
        title=np.array(
            ["Dune", "Digital camera with zoom lens", "Camera lens cap", "Romance novel"], dtype=object
        )
        if title
        else None,
        categories=np.array([("Fiction",), ("Camera & Photo",), ("Lenses",), ("Romance",)], dtype=object)
        if title
        else None,
        image_path=np.array(image_paths, dtype=object) if image_paths is not None else None,
    )


# ----------------------------------------------------------------------------------- text


def test_minilm_is_the_real_model_and_semantically_sensible(minilm):
    assert minilm.id.startswith("minilm:sentence-transformers/all-MiniLM-L6-v2@sha256:")
    assert minilm.dim == 384
    v = minilm.encode(["photography camera lens", "digital camera with zoom lens", "romance novel paperback"])
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.5 > 0.2 > v[0] @ v[2]
    # the id does not depend on anything but the shipped weights
    assert get_text_encoder("minilm").id == minilm.id


def test_hf_local_folder_gives_cls_vectors(tmp_path, minilm):
    import torch

    from benchmark import compat

    compat.apply()
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(minilm.folder), local_files_only=True)  # shipped vocab
    tok.save_pretrained(tmp_path / "tinybert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(cfg).eval()
    model.save_pretrained(tmp_path / "tinybert")

    enc = get_text_encoder(f"hf:{tmp_path / 'tinybert'}")
    assert enc.id.startswith("hf:tinybert@sha256:") and enc.dim == 32
    texts = ["hello world", "a much longer sentence about lenses"]
    got = enc.encode(texts)
    with torch.no_grad():
        cls = model(**tok(texts, padding=True, return_tensors="pt")).last_hidden_state[:, 0]
    np.testing.assert_allclose(got, torch.nn.functional.normalize(cls, dim=1).numpy(), atol=1e-5)


@pytest.fixture
def waits(monkeypatch):
    """What would make a failure slow, recorded instead of done: network connections, sleeps."""
    import socket

    seen: list[str] = []

    def connect(self, address, *args):
        seen.append(f"connect {address}")
        raise OSError("network blocked by the test")

    def resolve(host, *args, **kwargs):
        seen.append(f"resolve {host}")
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(time, "sleep", lambda seconds: seen.append(f"sleep {seconds}"))
    return seen


def test_hf_missing_model_fails_fast_offline(monkeypatch, tmp_path, waits):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("hf:uie-bench-tests/surely-not-cached", f"hf:{tmp_path / 'nothing'}"):
        with pytest.raises(BenchmarkError) as err:
            get_text_encoder(name)
        assert waits == []  # fast: no network attempt, no retry pause
        msg = str(err.value)
        assert "\n" not in msg and name in msg and "'minilm'" in msg


def test_unknown_encoder_names():
    with pytest.raises(BenchmarkError, match="unknown text encoder"):
        get_text_encoder("word2vec")
    with pytest.raises(BenchmarkError, match="unknown image encoder"):
        get_image_encoder("resnet")
    names = [n for n, _, _ in list_encoders()]
    assert names[0] == "minilm" and "offline-descriptor" in names
    assert all(mod in ("text", "image", "text+image") for _, mod, _ in list_encoders())


# ---------------------------------------------------------------------------------- image


def test_offline_descriptor_separates_colour_and_shape(shapes):
    paths, labels = shapes
    enc = get_image_encoder("offline-descriptor")
    assert "offline-descriptor" in enc.id and "clip" not in enc.id
    v, ok = enc.encode_with_mask(paths)
    assert ok.all() and v.dtype == np.float32 and v.shape == (len(paths), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    assert (labels[sim.argmax(1)] == labels).mean() >= 0.9  # nearest neighbour has the same colour+shape

    def mean_sim(a, b):
        block = sim[np.ix_(labels == a, labels == b)]
        return block[np.isfinite(block)].mean()

    assert mean_sim(0, 0) > mean_sim(0, 1) + 0.1  # red circles vs blue squares: colour
    assert mean_sim(0, 0) > mean_sim(0, 2) and mean_sim(2, 2) > mean_sim(0, 2)  # same colour, shape differs
    # deterministic and independent of batch composition
    again = enc.encode(paths[::-1])[::-1]
    np.testing.assert_array_equal(v, again)
    np.testing.assert_array_equal(v[:3], enc.encode(paths[:3]))


def test_image_mask_for_missing_and_unreadable(shapes, tmp_path, caplog):
    paths, _ = shapes
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    items = _items([paths[0], "", str(bad), str(tmp_path / "gone.png")])
    with caplog.at_level(logging.WARNING):
        f = compute_features(items, text_encoder=None, progress=False)
    assert f.text is None and f.image_encoder.startswith("offline-descriptor")
    np.testing.assert_array_equal(f.image_mask, [True, False, False, False])
    assert not f.image[1:].any() and np.linalg.norm(f.image[0]) == pytest.approx(1, abs=1e-5)
    assert "2 of 3 item images could not be read" in caplog.text
    assert not f.joint_space and f.modalities == {"image"}


def test_no_images_or_no_text():
    f = compute_features(_items(None, title=False), text_encoder=None, progress=False)
    assert f.text is None and f.image is None and f.image_mask is None
    f = compute_features(_items(["", "", "", ""], title=False), text_encoder=None, progress=False)
    assert f.image is None
    with pytest.raises(MissingRequirementError, match="dataset has no item text/metadata"):
        compute_features(_items(None, title=False), progress=False)


# ---------------------------------------------------------------------------------- cache


def test_cache_hit_skips_encoding_and_keys_follow_encoder_id(shapes, tmp_path, minilm):
    paths, _ = shapes
    items = _items([paths[0], paths[20], "", paths[40]])
    text, image = Counting(minilm), Counting(get_image_encoder("offline-descriptor"))
    first = compute_features(items, text, image, cache_dir=tmp_path, batch_size=2, progress=False)
    assert text.calls == 2 and image.calls == 2  # 4 prompts / 3 images in batches of 2
    assert first.text_encoder == minilm.id and first.image_mask.tolist() == [True, True, False, True]
    v = first.text
    assert v[1] @ v[2] > v[1] @ v[3]  # camera vs lens cap closer than camera vs romance novel
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 5  # text .npy/.json, image .npy/.mask.npy/.json

    second = compute_features(items, text, image, cache_dir=tmp_path, batch_size=2, progress=False)
    assert text.calls == 2 and image.calls == 2  # all from the cache
    np.testing.assert_array_equal(second.text, first.text)
    np.testing.assert_array_equal(second.image, first.image)
    np.testing.assert_array_equal(second.image_mask, first.image_mask)

    other = Counting(minilm, id_suffix="+other")  # another encoder id -> another key
    compute_features(items, other, None, cache_dir=tmp_path, progress=False)
    assert other.calls == 1 and len(list(tmp_path.iterdir())) == 7

    changed = _items([paths[0], paths[20], paths[21], paths[40]])  # items changed -> miss
    compute_features(changed, None, image, cache_dir=tmp_path, progress=False)
    assert image.calls == 3


def test_corrupt_cache_entry_is_recomputed(shapes, tmp_path, caplog):
    paths, _ = shapes
    items = _items(paths[:4], title=False)
    enc = Counting(get_image_encoder("offline-descriptor"))
    first = compute_features(items, None, enc, cache_dir=tmp_path, progress=False)
    (vec,) = [p for p in tmp_path.glob("image-*.npy") if not p.name.endswith(".mask.npy")]
    vec.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        again = compute_features(items, None, enc, cache_dir=tmp_path, progress=False)
    assert enc.calls == 2 and "unreadable" in caplog.text
    np.testing.assert_array_equal(again.image, first.image)
    assert (
        FeatureCache(tmp_path).load("image", vec.stem.split("-", 1)[1], 4, enc.dim, True) is not None
    )  # rewritten


# ----------------------------------------------------------------------------------- clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip architecture registered from a config file, random weights saved locally."""
    from benchmark import compat

    compat.apply()
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("clip")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (root / "uie-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(root / "uie-tiny-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("uie-tiny-clip", pretrained=None)
    torch.save(model.state_dict(), root / "tiny.pt")
    return "uie-tiny-clip", root / "tiny.pt", model.eval()


def test_clip_from_local_weights_file_is_a_joint_space(tiny_clip, shapes):
    import torch

    arch, weights, model = tiny_clip
    name = f"clip:{arch}/{weights}"
    text_enc, image_enc = get_text_encoder(name), get_image_encoder(name)
    assert text_enc.id == image_enc.id and text_enc.id.startswith(f"clip:{arch}/tiny.pt@sha256:")
    assert text_enc.dim == 32

    # the loaded weights are the saved ones: same text vectors as the model we saved
    import open_clip

    with torch.no_grad():
        want = model.encode_text(open_clip.get_tokenizer(arch)(["a red circle"]), normalize=True).numpy()
    np.testing.assert_allclose(text_enc.encode(["a red circle"]), want, atol=1e-5)

    paths, _ = shapes
    f = compute_features(_items([paths[0], "", paths[20], paths[40]]), name, name, progress=False)
    assert f.joint_space and f.text.shape == (4, 32) and f.image.shape == (4, 32)
    np.testing.assert_array_equal(f.image_mask, [True, False, True, True])
    np.testing.assert_allclose(np.linalg.norm(f.image[f.image_mask], axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(f.image_or_text()[1], f.text[1])  # paper 4.3: text stands in

    mixed = compute_features(
        _items([paths[0], "", paths[20], paths[40]]), name, "offline-descriptor", progress=False
    )
    assert not mixed.joint_space


def test_clip_missing_weights_is_one_line_naming_the_fallback(tiny_clip, tmp_path, monkeypatch, waits):
    arch, _, _ = tiny_clip
    missing = f"clip:{arch}/{tmp_path / 'missing.pt'}"
    with pytest.raises(BenchmarkError) as err:
        get_image_encoder(missing)
    assert "\n" not in str(err.value) and "'offline-descriptor'" in str(err.value)
    with pytest.raises(BenchmarkError) as err:
        get_text_encoder(missing)
    assert "\n" not in str(err.value) and "'minilm'" in str(err.value)

    # a known tag whose weights are in no local cache, offline: fails at once, names the fallback
    from benchmark.features import image

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(image, "_cached_tag_file", lambda cfg: None)
    with pytest.raises(
        BenchmarkError, match="unreachable or offline; use image encoder 'offline-descriptor'"
    ):
        get_image_encoder("clip:ViT-B-32/openai")
    assert waits == []  # at once: no network attempt, no retry pause
    with pytest.raises(BenchmarkError, match="expected clip:<arch>/<pretrained"):
        get_text_encoder("clip:ViT-B-32")


def test_max_tokens_truncates_and_names_the_cut(minilm):
    """features.max_tokens: prompts longer than the cut get other vectors, shorter ones the same; the id says so."""
    cut = get_text_encoder("minilm", max_tokens=8)
    assert cut.id == minilm.id + "+max_tokens=8"
    long = "a digital camera with a zoom lens, a battery, a strap and a memory card for travel photography"
    short = "Dune"
    full_v, cut_v = minilm.encode([long, short]), cut.encode([long, short])
    np.testing.assert_allclose(cut_v[1], full_v[1], atol=1e-6)
    assert float(cut_v[0] @ full_v[0]) < 0.99
    # the shared model is not left truncated for the full encoder
    np.testing.assert_allclose(minilm.encode([long]), full_v[:1], atol=1e-6)
    with pytest.raises(BenchmarkError, match="77-token"):
        get_text_encoder("clip:ViT-B-32/openai", max_tokens=32)


def test_features_cache_apart_by_max_tokens(tmp_path, minilm):
    items = _items()
    full = compute_features(items, "minilm", None, cache_dir=tmp_path, progress=False)
    cut = compute_features(items, "minilm", None, cache_dir=tmp_path, progress=False, max_tokens=8)
    assert cut.text_encoder.endswith("+max_tokens=8") and full.text_encoder == minilm.id
    assert len(list(tmp_path.rglob("text-*.npy"))) == 2
