"""Find methods (entry points), suites (shipped YAML) by name; refuse duplicates and unknowns.

Built-in methods register through the same ``benchmark.methods`` entry-point group as
third-party plugins, so the runner never special-cases its own methods (RecBole #489: external
models the runner cannot find by name).
"""

from __future__ import annotations

import functools
import logging
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import yaml

from benchmark.errors import ConfigError, did_you_mean
from benchmark.plugin import OPTIONAL_INPUTS, REQUIREMENTS, Method

ENTRY_POINT_GROUP = "benchmark.methods"
log = logging.getLogger(__name__)


@functools.cache
def methods() -> dict[str, type[Method]]:
    """All registered methods by name, checked for duplicate names and a valid contract."""
    found: dict[str, type[Method]] = {}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) is not a benchmark.plugin.Method")
        if cls.name != ep.name:
            raise ConfigError(f"entry point {ep.name!r} loads a method named {cls.name!r}")
        if ep.name in found and found[ep.name] is not cls:
            raise ConfigError(f"two plugins register the method name {ep.name!r}")
        unknown = (cls.requires - REQUIREMENTS) | (cls.uses - REQUIREMENTS - OPTIONAL_INPUTS)
        if unknown:
            raise ConfigError(f"method {ep.name!r} declares unknown requirements {sorted(unknown)}")
        found[ep.name] = cls
    if not found:
        raise ConfigError("no methods are registered: install the project first (pip install -e .)")
    return found


def get_method(name: str) -> type[Method]:
    known = methods()
    if name not in known:
        raise ConfigError(f"unknown method {name!r}{did_you_mean(name, known)}; known: {', '.join(sorted(known))}")
    return known[name]


def suites_dir() -> Path:
    return Path(str(files("benchmark") / "suites"))


def suites() -> dict[str, Path]:
    """Shipped suites by name (file stem)."""
    return {p.stem: p for p in sorted(suites_dir().glob("*.yaml"))}


def suite_path(name: str) -> Path:
    """A shipped suite by name, or a path to a suite file."""
    known = suites()
    if name in known:
        return known[name]
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} and candidate.exists():
        return candidate
    raise ConfigError(f"unknown suite {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")


TASKS = ("matching", "ranking", "transfer")


def suite_task(name: str) -> str:
    """The task a suite file declares: ``task: ranking``, ``transfer`` for a ``transfer:`` section, else matching."""
    path = suite_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return "matching"  # the matching loader reports the file's problem in one line
    if not isinstance(raw, dict):
        return "matching"
    task = raw.get("task", "transfer" if "transfer" in raw else "matching")
    if task not in TASKS:
        raise ConfigError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    return task
