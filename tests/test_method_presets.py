"""The plugin contract's config parts: ``check_config`` up front, per-method scale presets in config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark import registry
from benchmark.config import SCALES, resolve, validate_suite
from benchmark.errors import ConfigError
from benchmark.grid.plan import plan


def _no_data(*args, **kwargs):
    raise AssertionError("data was loaded before the config was checked")


@pytest.mark.parametrize("suite, method, override, message", [
    ("xmarket-matching", "vqrec", "vqrec.reassign_rounding=nearest", "vqrec.reassign_rounding"),
    ("xmarket-matching", "unisrec", "unisrec.examples=rows", "unisrec: invalid value for ['examples']"),
    ("xmarket-matching", "missrec", "missrec.fusion=late", "missrec.fusion"),
    ("xmarket-matching", "uniembedding", "uniembedding.pooling=max", "uniembedding: invalid value for ['pooling']"),
    ("unim2rec-c12", "unim2rec-text", "unim2rec-text.projector=mlp", "unim2rec: invalid value for ['projector']"),
    ("xmarket-transfer", "transrec", "transrec.negatives=many", "transrec.negatives"),  # through build_grid
])
def test_a_bad_method_value_fails_in_plan_before_any_data(monkeypatch, capsys, tmp_path: Path, suite, method,
                                                          override, message) -> None:
    from benchmark.cli import main

    monkeypatch.setattr("benchmark.tasks.matching.runner.prepare_inputs", _no_data)
    monkeypatch.setattr("benchmark.tasks.transfer.grid.prepare_inputs", _no_data)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan(suite, scale="tiny", methods=[method], overrides=(override,))
    code = main(["run", "--suite", suite, "--scale", "tiny", "--methods", method, "--seeds", "0", "--set", override,
                 "--data-dir", str(tmp_path / "does-not-exist"), "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "results").exists()


def test_every_registered_method_resolves_and_checks_at_every_scale() -> None:
    """Each method's own presets name only its keys and known scales, and give a config it accepts."""
    names = sorted(registry.methods())
    for scale in SCALES:
        runs = plan("xmarket-matching", scale=scale, methods=names, seeds=[0], allow_extra_methods=True)
        for run in runs:
            cls = registry.get_method(run.method)
            assert set(cls.scale_presets()) <= set(SCALES), run.method
            assert "scales" not in cls.default_config() and "scales" not in run.method_config, run.method


def _suite(**extra) -> dict:
    raw = {"name": "s", "methods": ["item2vec", "random"], "dataset": {"name": "xmarket-sim"}}
    raw.update(extra)
    return validate_suite(raw, "s.yaml")


DEFAULTS = {"item2vec": {"epochs": 20, "negative": 15, "workers": 1}, "random": {"dim": 128}}
PRESETS = {"item2vec": {"tiny": {"epochs": 2, "workers": 2}}}


def _item2vec(suite: dict, scale: str, **kw):
    return next(r for r in resolve(suite, DEFAULTS, scale=scale, presets_for=PRESETS, **kw) if r.method == "item2vec")


def test_the_methods_own_preset_applies_under_the_suite_file_and_is_recorded() -> None:
    run = _item2vec(_suite(), "tiny")
    assert run.method_config == {"epochs": 2, "negative": 15, "workers": 2}
    assert run.scaled_by_preset == {"epochs": 2, "workers": 2}
    assert _item2vec(_suite(), "small").scaled_by_preset == {}  # no preset at that scale
    # a suite-level value beats the method's preset; the preset no longer claims that key
    run = _item2vec(_suite(methods_config={"item2vec": {"epochs": 7}}), "tiny")
    assert run.method_config["epochs"] == 7 and run.scaled_by_preset == {"workers": 2}
    assert _item2vec(_suite(), "tiny", overrides=["item2vec.epochs=9"]).method_config["epochs"] == 9


def test_a_suite_preset_entry_replaces_the_methods_preset() -> None:
    over = _suite(methods_config={"item2vec": {"negative": 5}},
                  scales={"tiny": {"methods_config": {"item2vec": {"epochs": 3}}}})
    run = _item2vec(over, "tiny")
    assert run.method_config == {"epochs": 3, "negative": 5, "workers": 1} and run.scaled_by_preset == {"epochs": 3}
    plain = _item2vec(_suite(scales={"tiny": {"methods_config": {"item2vec": {}}}}), "tiny")
    assert plain.method_config == DEFAULTS["item2vec"] and plain.scaled_by_preset == {}


@pytest.mark.parametrize("presets, message", [
    ({"huge": {"epochs": 2}}, "unknown scale"),
    ({"tiny": {"epochz": 2}}, "did you mean 'epochs'"),
    ({"tiny": {"epochs": "two"}}, "expected int"),
    ({"tiny": [1]}, "expected a mapping"),
])
def test_a_bad_method_preset_is_a_config_error(presets, message) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(_suite(), DEFAULTS, scale="tiny", presets_for={"item2vec": presets})


#: Where each trained method of the main suite keeps its early-stopping cap and patience (dotted keys), and
#: the epochs at the start of the capped stage that do not count towards early stopping (VQ-Rec validates
#: only once its code re-assignment epochs are over). clip, popularity and random do not train.
STOPPING = {
    "item2vec": ("epochs", "patience", None),
    "pgg": ("graph.epochs", "graph.patience", None),
    "cb2cf": ("epochs", "patience", None),
    "uae": ("epochs", "patience", None),
    "uniembedding-text": ("epochs", "patience", None),
    "uniembedding": ("epochs", "patience", None),
    "missrec": ("finetune_epochs", "patience", None),
    "missrec-transductive": ("finetune_epochs", "patience", None),
    "unim2rec": ("epochs", "patience", None),
    "vqrec": ("finetune_epochs", "patience", "reassign_steps"),
    "unisrec": ("finetune_epochs", "patience", None),
    "unisrec-transductive": ("finetune_epochs", "patience", None),
    "transrec": ("epochs", "patience", None),
    "sasrec": ("epochs", "patience", None),
}
UNTRAINED = {"clip", "popularity", "random"}


def _dotted(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_every_trained_method_can_stop_by_early_stopping_before_its_cap(scale) -> None:
    """Issue 24: the epoch cap is a safety net, so it must leave room for patience to run out, and patience
    is never shrunk below 3 validations to force a 'converged' label (a cap <= patience always ends capped)."""
    runs = plan("xmarket-matching", scale=scale, seeds=[0])
    assert {r.method for r in runs} - UNTRAINED == set(STOPPING)  # a new trained method needs its keys here
    bad = []
    for run in runs:
        if run.method in UNTRAINED:
            continue
        cap_key, patience_key, unvalidated_key = STOPPING[run.method]
        cfg = run.method_config
        every = int(cfg.get("valid_every", 1))  # UniEmbedding counts patience in validations of every k epochs
        validations = (int(_dotted(cfg, cap_key)) - int(cfg[unvalidated_key] if unvalidated_key else 0)) // every
        patience = int(_dotted(cfg, patience_key))
        if patience < 3 or validations <= patience:
            bad.append(f"{run.method}: {validations} validations under the cap, patience {patience}")
    assert not bad, bad
