"""The plugin contract's ``check_config``: called for every planned run, before any data loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.errors import ConfigError
from benchmark.runner import plan


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

    monkeypatch.setattr("benchmark.runner.prepare_inputs", _no_data)
    monkeypatch.setattr("benchmark.transfer_grid.prepare_inputs", _no_data)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan(suite, scale="tiny", methods=[method], overrides=(override,))
    code = main(["run", "--suite", suite, "--scale", "tiny", "--methods", method, "--seeds", "0", "--set", override,
                 "--data-dir", str(tmp_path / "does-not-exist"), "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "results").exists()
