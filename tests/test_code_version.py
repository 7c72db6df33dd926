"""The code version a run records is dirty only when code it reads is modified."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.store.tracking import REPO_ROOT, checkout_version, code_changes

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    for rel in ("benchmark/core.py", "methods/m/method.py", "reports/s/report.md", "README.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_a_rewritten_report_or_readme_leaves_the_version_clean(checkout: Path) -> None:
    (checkout / "reports/s/report.md").write_text("regenerated\n")
    (checkout / "README.md").write_text("edited\n")
    version = checkout_version(checkout)
    assert "+g" in version and not version.endswith(".dirty")


@pytest.mark.parametrize("rel", ["benchmark/core.py", "methods/m/method.py"])
def test_modified_code_marks_the_version_dirty(checkout: Path, rel: str) -> None:
    (checkout / rel).write_text("v2\n")
    assert checkout_version(checkout).endswith(".dirty")


def test_the_package_looks_at_its_own_checkout():
    assert (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "benchmark" / "__init__.py").is_file()


def _commit(root: Path, message: str) -> str:
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_report_of_two_versions_names_the_code_that_changed_between_them(checkout: Path) -> None:
    first = checkout_version(checkout)
    (checkout / "README.md").write_text("docs only\n")
    docs = _commit(checkout, "docs")
    assert "changed in 0 file(s)" in code_changes([first, f"0.1.0+g{docs}"], checkout)
    (checkout / "methods/m/method.py").write_text("v2\n")
    code = _commit(checkout, "code")
    text = code_changes([f"0.1.0+g{code}", first, f"0.1.0+g{docs}.dirty"], checkout)
    assert "changed in 1 file(s): methods/m/method.py" in text and "README" not in text
    assert f"0.1.0+g{docs}.dirty ran with uncommitted changes" in text
    assert code_changes([first], checkout) == ""
    assert "cannot be checked here" in code_changes([first, "0.1.0+gdeadbee"], checkout)
