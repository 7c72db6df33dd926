"""Suite validation and layered configuration: defaults < suite < scale preset < --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config import load_suite_file, resolve, validate_suite
from benchmark.errors import ConfigError
from benchmark.registry import suite_path

DEFAULTS = {"item2vec": {"epochs": 20, "negative": 15, "sets": "mixed"}, "random": {"dim": 128}}


def suite(**extra) -> dict:
    raw = {"name": "s", "methods": ["item2vec", "random"], "dataset": {"name": "xmarket-sim"}}
    raw.update(extra)
    return validate_suite(raw, "s.yaml")


def test_shipped_suites_validate() -> None:
    for name in ("xmarket-matching", "xmarket-ablation"):
        cfg = load_suite_file(suite_path(name))
        assert cfg["name"] == name


def test_layers_apply_in_order_and_scale_preset_is_recorded() -> None:
    s = suite(methods_config={"item2vec": {"epochs": 10}},
              scales={"tiny": {"methods_config": {"item2vec": {"epochs": 2}}}})
    (small,) = [r for r in resolve(s, DEFAULTS, scale="small") if r.method == "item2vec"]
    assert small.method_config["epochs"] == 10 and small.scaled_by_preset == {}
    (tiny,) = [r for r in resolve(s, DEFAULTS, scale="tiny") if r.method == "item2vec"]
    assert tiny.method_config["epochs"] == 2 and tiny.scaled_by_preset == {"epochs": 2}
    (over,) = [r for r in resolve(s, DEFAULTS, scale="tiny", overrides=["item2vec.epochs=7"]) if r.method == "item2vec"]
    assert over.method_config["epochs"] == 7


def test_set_overrides_suite_sections_with_type_check() -> None:
    runs = resolve(suite(), DEFAULTS, overrides=["evaluation.candidate_pool=domain", "split.test_user_frac=0.2"])
    assert runs[0].evaluation["candidate_pool"] == "domain"
    assert runs[0].split["test_user_frac"] == 0.2


def test_max_tokens_is_absent_unless_set_so_run_keys_stay() -> None:
    assert "max_tokens" not in resolve(suite(), DEFAULTS)[0].features
    assert resolve(suite(), DEFAULTS, overrides=["features.max_tokens=77"])[0].features["max_tokens"] == 77
    assert "max_tokens" not in resolve(suite(), DEFAULTS, overrides=["features.max_tokens=null"])[0].features


@pytest.mark.parametrize("override, message", [
    ("item2vec.nope=1", "unknown key"),
    ("nothing.x=1", "unknown key"),
    ("item2vec.epochs=many", "expected int"),
    ("evaluation.candidate_pool=everywhere", "candidate_pool"),
    ("noequals", "key=value"),
    ("features.max_tokens=4", "out of range"),
    ("features.max_tokens=many", "expected int"),
])
def test_bad_overrides_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(suite(), DEFAULTS, overrides=[override])


@pytest.mark.parametrize("raw, message", [
    ({"methods": ["random"], "dataset": {"name": "x"}}, "missing required key 'name'"),
    ({"name": "s", "methods": ["random"], "dataset": {"name": "x"}, "colour": 1}, "unknown key 'colour'"),
    ({"name": "s", "methods": "random", "dataset": {"name": "x"}}, "expected list"),
    ({"name": "s", "methods": ["random"], "dataset": {"name": "x", "size": 3}}, "unknown key 'size'"),
    ({"name": "s", "methods": ["random"], "dataset": {"name": "x"}, "seeds": ["a"]}, "seeds"),
    ({"name": "s", "methods": ["random"], "dataset": {"name": "x"}, "scales": {"huge": {}}}, "unknown scale"),
    ([1, 2], "mapping"),
])
def test_malformed_suites_are_rejected(raw, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_suite(raw, "bad.yaml")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: s\nmethods: [a, b\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: malformed YAML"):
        load_suite_file(path)


def test_unknown_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        resolve(suite(), DEFAULTS, methods=["nope"])
