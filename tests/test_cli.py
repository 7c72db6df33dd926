"""The command line: --help explains itself; bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main


def test_help_lists_the_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmark", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for word in ("run", "report", "list", "data", "examples:"):
        assert word in out.stdout


@pytest.mark.parametrize("what", ["methods", "suites", "datasets", "encoders"])
def test_list(what: str, capsys) -> None:
    assert main(["list", what]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "no-such-suite"], "unknown suite"),
    (["run", "--suite", "xmarket-matching", "--methods", "nope"], "unknown method 'nope'"),
    (["run", "--suite", "xmarket-matching", "--set", "item2vec.nope=1"], "unknown key"),
    (["run", "--suite", "xmarket-matching", "--set", "item2vec.epochs=lots"], "expected int"),
    (["run", "--suite", "xmarket-matching", "--seeds", "a,b"], "--seeds"),
    (["card", "nope"], "unknown method"),
    (["report", "--suite", "xmarket-matching", "--results-dir", "/nonexistent/results"], "no results"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path) -> None:
    code = main(argv + (["--data-dir", str(tmp_path)] if argv[0] == "run" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_malformed_suite_file_is_rejected(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethods: [random]\ndataset: {name: xmarket-sim}\nbogus: 1\n")
    assert main(["run", "--suite", str(bad), "--data-dir", str(tmp_path)]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err


def test_card_prints_the_methods_card(capsys) -> None:
    assert main(["card", "item2vec"]) == 0
    assert "Barkan" in capsys.readouterr().out
