"""``features.text_backend: auto``: the text backend measured fastest on this machine, read from a record.

``scripts/bench_text_encoders.py --record`` times every backend of ``minilm`` on the same prompts
and writes its figures and choice to ``text-backends.json`` in the user cache
(``$UIE_CACHE_DIR`` or ``~/.cache/uie-bench``), keyed by this machine: CPU model, instruction
sets and the versions of the libraries that run the backends. ``auto`` resolves to that choice when
the config is resolved, so run keys and encoder ids always name a concrete backend; with no record
for this machine (a fresh clone, CI, another CPU) it is ``torch``, the fp32 reference, and nothing
changes until someone measures.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
from pathlib import Path

from benchmark.fsutil import atomic_write_text, user_cache_dir
from benchmark.machine import machine_info

log = logging.getLogger(__name__)

RECORD = "text-backends.json"
#: A backend is eligible only when its vectors keep this mean cosine to torch fp32's (issue 25).
MIN_MEAN_COSINE = 0.99
#: ... and it replaces torch fp32 only when at least this much faster: below it the ratio is load noise.
MIN_SPEEDUP = 1.2
_LIBS = ("torch", "onnxruntime", "onnx", "onnxscript", "sentence-transformers", "transformers")


def record_path() -> Path:
    return user_cache_dir() / RECORD


def machine_key() -> str:
    """What a measurement holds for: CPU model, instruction sets, the backends' library versions."""
    info = machine_info()
    versions = {}
    for lib in _LIBS:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "absent"
    payload = json.dumps([info["cpu"], info["arch"], sorted(info["isa"]), versions], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def choose(figures: dict[str, dict]) -> str:
    """The fastest backend whose mean cosine to torch fp32 is >= MIN_MEAN_COSINE and that beats
    torch fp32 by MIN_SPEEDUP; else ``torch``. ``figures``: backend -> {items_per_s, mean_cosine}."""
    base = figures["torch"]["items_per_s"]
    eligible = {b: f["items_per_s"] for b, f in figures.items()
                if b != "torch" and f["mean_cosine"] >= MIN_MEAN_COSINE and f["items_per_s"] >= MIN_SPEEDUP * base}
    return max(eligible, key=eligible.get) if eligible else "torch"


def read_choice() -> tuple[str, dict] | None:
    """(backend, this machine's entry) from the record, or None when it holds none (or is unreadable)."""
    path = record_path()
    try:
        entry = json.loads(path.read_text()).get(machine_key())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as e:
        log.warning("%s is unreadable (%s); features.text_backend=auto means torch", path, e)
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("choice"), str):
        return None
    return entry["choice"], entry


def write_choice(figures: dict[str, dict], note: str = "") -> tuple[str, Path]:
    """Store this machine's figures and the backend :func:`choose` picks; (choice, record path)."""
    path = record_path()
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            record = {}
    except (OSError, ValueError):
        record = {}
    info = machine_info()
    choice = choose(figures)
    record[machine_key()] = {
        "choice": choice, "figures": figures, "cpu": info["cpu"], "isa": info["isa"], "note": note,
        "rule": f"fastest with mean cosine >= {MIN_MEAN_COSINE} and >= {MIN_SPEEDUP}x torch fp32",
        "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return choice, path
