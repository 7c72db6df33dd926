"""The minilm text backends (features.text_backend): which exist, which can run here, and what ``auto`` is.

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
import importlib.util
import json
import logging
from pathlib import Path

from benchmark.errors import ConfigError
from benchmark.fsutil import atomic_write_text, user_cache_dir
from benchmark.machine import machine_info

log = logging.getLogger(__name__)

RECORD = "text-backends.json"
#: A backend is eligible only when its vectors keep this mean cosine to torch fp32's (issue 25).
MIN_MEAN_COSINE = 0.99
#: ... and it replaces torch fp32 only when at least this much faster: below it the ratio is load noise.
MIN_SPEEDUP = 1.2
#: Eligible backends within this fraction of the fastest are a tie (repeats differ by more than this
#: under load); the tie goes to the one closest to torch fp32 (highest mean cosine).
TIE_FRACTION = 0.10
_LIBS = ("torch", "onnxruntime", "onnx", "onnxscript", "sentence-transformers", "transformers")


RULE = (f"fastest with mean cosine >= {MIN_MEAN_COSINE} and >= {MIN_SPEEDUP}x torch fp32; within "
        f"{TIE_FRACTION:.0%} of the fastest, the highest mean cosine")


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
    """The backend whose mean cosine to torch fp32 is >= MIN_MEAN_COSINE and that beats torch fp32
    by MIN_SPEEDUP: the fastest, or among those within TIE_FRACTION of the fastest the most faithful
    (highest mean cosine); else ``torch``. ``figures``: backend -> {items_per_s, mean_cosine}."""
    base = figures["torch"]["items_per_s"]
    eligible = {b: f for b, f in figures.items()
                if b != "torch" and f["mean_cosine"] >= MIN_MEAN_COSINE and f["items_per_s"] >= MIN_SPEEDUP * base}
    if not eligible:
        return "torch"
    fastest = max(f["items_per_s"] for f in eligible.values())
    tied = {b: f for b, f in eligible.items() if f["items_per_s"] >= (1 - TIE_FRACTION) * fastest}
    return max(tied, key=lambda b: (tied[b]["mean_cosine"], tied[b]["items_per_s"]))


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
        "rule": RULE,
        "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return choice, path


#: How the minilm text encoder can run (features.text_backend; absent = torch, the fp32 reference,
#: so runs made before backends existed keep their keys). benchmark/features/text.py runs them;
#: ``auto`` is resolved to one of them (or torch) when the config is resolved.
TEXT_BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")
ONNX_EXTRA = "pip install 'uie-bench[onnx]'"


def onnx_runtime_missing() -> str | None:
    """None when the ONNX backends can run here, else what is missing (naming the extra)."""
    missing = [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    return f"needs {', '.join(missing)} ({ONNX_EXTRA})" if missing else None


def check_text_backend(features: dict, where: str = "features") -> None:
    """A known backend, for minilm, on cpu for ONNX, with ONNX Runtime installed: before any data loads."""
    backend = features.get("text_backend")
    if backend is None or backend == "torch":
        return
    if backend not in TEXT_BACKENDS:
        raise ConfigError(f"{where}.text_backend={backend!r}: unknown; known: {', '.join(TEXT_BACKENDS)}, auto")
    encoder = features.get("text_encoder")
    if encoder != "minilm":
        raise ConfigError(f"{where}.text_backend={backend!r} applies to the minilm text encoder only "
                          f"(text_encoder is {encoder!r})")
    if backend.startswith("onnx"):
        device = features.get("device") or "cpu"
        if device != "cpu":
            raise ConfigError(f"{where}.text_backend={backend!r} runs on cpu only (features.device={device!r})")
        missing = onnx_runtime_missing()
        if missing:
            raise ConfigError(f"{where}.text_backend={backend!r} {missing}")


def auto_text_backend(features: dict) -> str:
    """What ``features.text_backend: auto`` means here: the recorded choice for this machine when it
    can run with these features, else torch (nothing measured, another encoder, a GPU, no ONNX Runtime)."""
    recorded = read_choice() if features.get("text_encoder") == "minilm" else None
    if recorded is None:
        return "torch"
    choice, entry = recorded
    if choice not in TEXT_BACKENDS:
        return "torch"
    if choice.startswith("onnx") and ((features.get("device") or "cpu") != "cpu" or onnx_runtime_missing()):
        log.warning("features.text_backend=auto: this machine's measured choice %s cannot run here (%s); using torch",
                    choice, onnx_runtime_missing() or f"features.device={features.get('device')}")
        return "torch"
    return choice
