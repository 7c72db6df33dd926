"""The code version a run records is dirty only when code it reads is modified."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.store.tracking import checkout_version

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
