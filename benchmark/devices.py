"""The ``device`` setting of torch methods and models: checked once, before any work starts.

``cpu`` (the default) or ``cuda[:k]`` when this machine has that CUDA device; anything else is a
config error naming where the key sits. The runner checks every run of a grid up front, so a
GPU asked for on a machine without one fails in one line before data loading or the first fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from benchmark.errors import ConfigError

DEFAULT_DEVICE = "cpu"
_CUDA = re.compile(r"cuda(:\d+)?")


def check_device(name: Any, where: str = "device") -> str:
    """The device string ``name`` if this machine can run it; ConfigError (naming ``where``) otherwise."""
    if name is None:
        return DEFAULT_DEVICE
    if not isinstance(name, str):
        raise ConfigError(f"{where}: expected cpu or cuda[:index], got {name!r}")
    name = name.strip()
    if name == "cpu":
        return name
    if not _CUDA.fullmatch(name):
        raise ConfigError(f"{where}: unknown device {name!r}; use cpu or cuda[:index]")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"{where}: {name!r} was asked for but this machine has no CUDA device (use cpu)")
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{where}: {name!r} was asked for but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def check_devices(configs: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Pre-flight over (label, config) pairs: every ``device`` key must name a usable device."""
    for label, cfg in configs:
        if isinstance(cfg, dict) and "device" in cfg:
            check_device(cfg["device"], f"{label}.device")
