"""features.text_backend: the shipped MiniLM on ONNX Runtime (fp32, int8) and in bf16, each named in its id.

The export is real (torch.onnx.export of the local model folder into a temporary cache: no
download), once per module; int8 quantises that export.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil

import numpy as np
import pytest

from benchmark.backend_choice import choose, machine_key, write_choice
from benchmark.cli import main
from benchmark.config import load_suite_file, resolve
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.features import compute_features, get_text_encoder, list_encoders
from benchmark.features.onnx_backend import entry_name, exported_model
from benchmark.registry import get_method, suite_path
from methods.clip.model import short_encoder

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="onnxruntime is not installed (pip install 'uie-bench[onnx]')")

PROMPTS = [
    "Books. Dune. Fiction, Science Fiction. A desert planet, a noble family and a spice everyone wants.",
    "Electronics. Digital camera with 10x zoom lens. Camera & Photo, Point & Shoot. Battery and strap included.",
    "Cell Phones and Accessories. Clear case for iPhone 12. Cases, Bumpers. Slim, shock-absorbing corners.",
    "Electronics. Camera lens cap, 58 mm. Accessories, Lens Caps.",
    # longer than MiniLM's 256 tokens: the ONNX path must truncate exactly as sentence-transformers does
    "Books. Collected essays. " + " ".join(f"essay number {k} on travel, food and family life" for k in range(60)),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(export root, {backend: encoder}) with both ONNX exports made once into a temporary cache."""
    root = tmp_path_factory.mktemp("onnx")
    encoders = {b: get_text_encoder("minilm", backend=b, export_root=root) for b in ("torch", "onnx", "onnx-int8")}
    for enc in encoders.values():
        enc.encode(PROMPTS[:1])  # exports now (the model loads lazily): every test finds both exports
    return root, encoders


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_onnx_fp32_gives_the_torch_vectors(exports):
    _, enc = exports
    cos = _cos(enc["onnx"].encode(PROMPTS), enc["torch"].encode(PROMPTS))
    assert cos.min() > 0.999, cos


def test_onnx_int8_stays_within_the_eligibility_cosine(exports):
    _, enc = exports
    vecs = enc["onnx-int8"].encode(PROMPTS)
    cos = _cos(vecs, enc["torch"].encode(PROMPTS))
    assert cos.mean() > 0.99 and cos.min() > 0.97, cos
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert cos.max() < 0.99999, "int8 vectors identical to fp32: was the model quantised at all?"


def test_each_backend_has_its_own_id_and_feature_cache_entry(exports, tmp_path):
    root, enc = exports
    ids = {b: e.id for b, e in enc.items()}
    ids["torch-bf16"] = get_text_encoder("minilm", backend="torch-bf16").id
    assert len(set(ids.values())) == 4
    assert "+backend" not in ids["torch"]  # the fp32 reference keeps the id (and caches, run keys) it had
    assert ids["onnx-int8"] == ids["torch"] + "+backend=onnx-int8"
    assert short_encoder(ids["onnx-int8"]) == "minilm+onnx-int8" and short_encoder(ids["torch"]) == "minilm"  # labels
    from benchmark.data.model import Items

    items = Items(domains=("Books",), source_id=np.array(["a", "b"], dtype=object),
                  domain=np.zeros(2, dtype=np.int16), title=np.array(["Dune", "Emma"], dtype=object))
    made = {b: compute_features(items, "minilm", None, cache_dir=tmp_path, progress=False, text_backend=b,
                                export_root=root).text_encoder for b in ("torch", "onnx-int8")}
    assert made == {b: ids[b] for b in made}
    assert len(list(tmp_path.glob("text-*.npy"))) == 2


def test_a_corrupted_export_is_named_and_exported_again(exports, tmp_path, caplog):
    root, enc = exports
    copy = tmp_path / "onnx"
    shutil.copytree(root, copy)
    model = copy / entry_name(enc["torch"].weights_hash, "onnx-int8") / "model.onnx"
    good = model.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = exported_model(enc["torch"].folder, enc["torch"].weights_hash, "onnx-int8", copy)
    assert again == model and str(model) in caplog.text and "corrupt" in caplog.text
    assert model.read_bytes() != bytes(data)
    # a verified entry is reused: no warning, same file
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert exported_model(enc["torch"].folder, enc["torch"].weights_hash, "onnx-int8", copy) == model
    assert "ONNX export" not in caplog.text


def test_without_onnxruntime_asking_for_it_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(BenchmarkError, match=r"uie-bench\[onnx\]"):
        exported_model(tmp_path, "0" * 64, "onnx-int8", tmp_path)
    code = main(["run", "--suite", "xmarket-matching", "--scale", "tiny", "--dataset", "xmarket-sim", "--methods", "clip",
                 "--no-progress",
                 "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
                 "--reports-dir", str(tmp_path / "reports"),
                 "--set", "features.text_backend=onnx-int8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "onnxruntime" in err and "uie-bench[onnx]" in err, err
    assert not (tmp_path / "data").exists()  # refused before any data was made


def test_set_text_backend_is_checked_and_torch_keeps_the_config():
    suite = load_suite_file(suite_path("xmarket-matching"))
    defaults = {"clip": get_method("clip").default_config()}
    plain = resolve(suite, defaults, methods=["clip"])[0]
    assert "text_backend" not in plain.features
    assert resolve(suite, defaults, methods=["clip"], overrides=["features.text_backend=torch"])[0] == plain
    int8 = resolve(suite, defaults, methods=["clip"], overrides=["features.text_backend=onnx-int8"])[0]
    assert int8.features["text_backend"] == "onnx-int8" and int8.identity_json() != plain.identity_json()
    with pytest.raises(ConfigError, match="unknown"):
        resolve(suite, defaults, methods=["clip"], overrides=["features.text_backend=tensorrt"])
    with pytest.raises(ConfigError, match="minilm"):
        resolve(suite, defaults, methods=["clip"],
                overrides=["features.text_backend=onnx", "features.text_encoder=hf:bert-base-uncased"])
    assert any("onnx-int8" in summary for _, _, summary in list_encoders())


FIGURES = {"torch": {"items_per_s": 10.0, "mean_cosine": 1.0}, "torch-bf16": {"items_per_s": 20.0, "mean_cosine": 0.99999},
           "onnx": {"items_per_s": 19.0, "mean_cosine": 1.0}, "onnx-int8": {"items_per_s": 34.0, "mean_cosine": 0.994}}


def test_choice_is_the_fastest_backend_at_mean_cosine_0_99_and_1_2x():
    assert choose(FIGURES) == "onnx-int8"
    assert choose({**FIGURES, "onnx-int8": {"items_per_s": 34.0, "mean_cosine": 0.95}}) == "onnx"  # tie with bf16: exact
    slow = {b: {"items_per_s": 11.0, "mean_cosine": 1.0} for b in FIGURES} | {"torch": FIGURES["torch"]}
    assert choose(slow) == "torch"  # 1.1x is load noise, not a reason to leave the reference


def test_a_speed_tie_goes_to_the_backend_closest_to_fp32():
    # this machine's record (2026-12-07): bf16 169.5 items/s at cosine 0.99999, int8 173.9 at 0.994
    tie = {**FIGURES, "torch-bf16": {"items_per_s": 32.0, "mean_cosine": 0.99999}}
    assert choose(tie) == "torch-bf16"
    assert choose({**tie, "torch-bf16": {"items_per_s": 30.0, "mean_cosine": 0.99999}}) == "onnx-int8"  # 12 % slower


def test_auto_runs_this_machines_recorded_choice_and_torch_without_one(monkeypatch, tmp_path):
    monkeypatch.setenv("UIE_CACHE_DIR", str(tmp_path))
    suite = load_suite_file(suite_path("xmarket-matching"))
    defaults = {"clip": get_method("clip").default_config()}

    def backend(*overrides: str) -> str | None:
        return resolve(suite, defaults, methods=["clip"], overrides=list(overrides))[0].features.get("text_backend")

    assert backend() is None  # nothing measured: torch fp32, the run keys made before backends existed
    (tmp_path / "text-backends.json").write_text(json.dumps({"another-machine": {"choice": "onnx-int8"}}))
    assert backend() is None
    choice, path = write_choice(FIGURES, "test")
    assert choice == "onnx-int8" and path.parent == tmp_path
    assert json.loads(path.read_text())[machine_key()]["figures"]["onnx-int8"]["mean_cosine"] == 0.994
    assert backend() == "onnx-int8" and backend("features.text_backend=auto") == "onnx-int8"
    assert backend("features.text_backend=torch") is None
    assert backend("features.text_encoder=hf:bert-base-uncased") is None  # auto applies to minilm only
