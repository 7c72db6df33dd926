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


def test_misspelled_names_get_a_did_you_mean_and_exit_2(capsys):
    from benchmark.cli import main

    assert main(["run", "--suite", "xmarket-matchng", "--scale", "tiny"]) == 2
    assert "did you mean 'xmarket-matching'" in capsys.readouterr().err
    assert main(["card", "item2vc"]) == 2
    assert "did you mean 'item2vec'" in capsys.readouterr().err


def test_set_errors_name_the_full_key_and_suggest(capsys):
    from benchmark.cli import main

    assert main(["run", "--suite", "xmarket-matching", "--scale", "tiny", "--methods", "item2vec",
                 "--set", "item2vec.epochz=5"]) == 2
    err = capsys.readouterr().err
    assert "--set item2vec.epochz" in err and "did you mean 'epochs'" in err


def test_methods_outside_the_suite_need_a_flag(capsys, caplog):
    from benchmark.cli import main
    from benchmark.grid.plan import plan

    assert main(["run", "--suite", "xmarket-matching", "--scale", "tiny",
                 "--methods", "uniembedding-wo-user-view"]) == 2
    assert "--allow-extra-methods" in capsys.readouterr().err
    with caplog.at_level("WARNING"):
        (run,) = plan("xmarket-matching", scale="tiny", methods=["uniembedding-wo-user-view"], allow_extra_methods=True)
    # it runs with its own defaults and its own tiny preset (methods/uniembedding/config.yaml), logged
    assert "not a method of suite" in caplog.text and "epochs=60" in caplog.text
    assert run.scaled_by_preset == {"epochs": 60, "batch_size": 256}


def test_a_file_as_data_dir_is_one_line_and_exit_2(capsys, tmp_path):
    from benchmark.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["run", "--suite", "xmarket-matching", "--data-dir", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file, not a directory" in err and "\n" not in err
