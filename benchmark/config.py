"""Suite and method configuration, layered: method defaults < the method's scale preset < suite
file < the suite's scale preset < --set.

A suite file is validated against the schema below; any unknown key, wrong type or unknown
method is a ConfigError (one line, exit 2). A method's speed presets live beside it, in the
``scales:`` section of its ``config.yaml``; a suite lists its methods and suite-level overrides,
and its own ``scales:`` section holds suite-level values (features, evaluation, ...) and, for a
method whose preset does not fit the suite, a ``methods_config`` entry that replaces the method's
preset at that scale. Every value a preset changes is recorded in the resolved config
(``scaled_by_preset``), so nothing is scaled down silently.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.backend_choice import auto_text_backend, check_text_backend
from benchmark.errors import ConfigError, did_you_mean

SCALES = ("tiny", "small", "paper")
#: evaluation.rank_cap default: ranks above it are stored as cap + 1 (evaluation/capped.py)
DEFAULT_RANK_CAP = 1000
#: Seeds feed numpy, torch, gensim and Ray: non-negative and int32-sized everywhere they go.
MAX_SEED = 2**31 - 1

#: Suite schema: section -> {key: allowed types}. ``methods_config`` is checked per method.
SCHEMA: dict[str, dict[str, tuple[type, ...]] | tuple[type, ...]] = {
    "name": (str,),
    "description": (str,),
    "tables": (list,),
    "scale": (str,),
    "methods": (list,),
    "seeds": (list,),
    "dataset": {"name": (str,), "domains": (str,), "fallback": (str,), "data_dir": (str,),
                "domain_field": (str,), "time_field": (str,)},
    "split": {
        "seed": (int,),
        "test_user_frac": (float,),
        "overlapped_frac": (float,),
        "min_interactions": (int,),
    },
    "features": {"text_encoder": (str, type(None)), "image_encoder": (str, type(None)), "batch_size": (int,),
                 "word_drop": (float,), "degrade": (dict,), "device": (str,), "max_tokens": (int, type(None)),
                 "text_backend": (str, type(None))},
    "evaluation": {"candidate_pool": (str,), "block_queries": (int,), "block_items": (int,),
                   "exclude_history": (bool,), "rank_cap": (int, type(None))},
    "methods_config": (dict,),
    "scales": (dict,),
    "transfer": (dict,),  # source -> target experiment (benchmark/tasks/transfer/stages.py validates its keys)
}
REQUIRED = ("name", "methods", "dataset")
OPTIONAL_DATASET_KEYS = ("dataset.domain_field", "dataset.time_field")
DEFAULTS: dict[str, Any] = {
    "description": "",
    "tables": ["table1"],
    "scale": "small",
    "seeds": [0],
    "dataset": {"domains": "us/Books,us/Electronics,us/Cell_Phones_and_Accessories", "fallback": "xmarket-sim"},
    "split": {"seed": 0, "test_user_frac": 0.1, "overlapped_frac": 0.1, "min_interactions": 2},
    # word_drop > 0: also encode UniSRec's word-drop text view (its seq-seq augmentation; MISSRec's too)
    # text_backend: how minilm runs; auto = the backend measured fastest on this machine with vectors
    # at cosine >= 0.99 to torch fp32 (benchmark/backend_choice.py), torch fp32 when none was measured
    "features": {"text_encoder": "minilm", "image_encoder": "offline-descriptor", "batch_size": 64,
                 "word_drop": 0.0, "text_backend": "auto"},
    # exclude_history: the next-item protocol drops the user's history items from the candidates.
    # rank_cap: ranks above it are stored as rank_cap + 1 ("beyond the cap"; evaluation/capped.py);
    # null or 0 stores every exact rank. Metrics (K <= 50) are the same either way.
    "evaluation": {"candidate_pool": "all", "block_queries": 256, "block_items": 8192, "exclude_history": False,
                   "rank_cap": DEFAULT_RANK_CAP},
    "methods_config": {},
    "scales": {},
}
CANDIDATE_POOLS = ("all", "domain")
#: The largest metric cut-off K (evaluation/metrics.py: DEFAULT_METRICS, NEXT_ITEM_METRICS); a
#: rank cap below it would change a metric, so it is refused.
MAX_METRIC_K = 50
#: Suite-level ranges, checked on the resolved config before any data is loaded: key -> (low, high,
#: low inclusive). Method values are checked by :func:`_check_method_ranges`.
RANGES: dict[str, tuple[float, float, bool]] = {
    "split.test_user_frac": (0.0, 1.0, False),
    "split.overlapped_frac": (0.0, 1.0, True),
    "split.min_interactions": (1, float("inf"), True),
    "split.seed": (0, MAX_SEED, True),
    "features.batch_size": (1, float("inf"), True),
    "features.word_drop": (0.0, 1.0, True),
    "features.max_tokens": (8, float("inf"), True),
    "evaluation.block_queries": (1, float("inf"), True),
    "evaluation.block_items": (1, float("inf"), True),
}
#: Upper bounds on what sets how long a run trains, so a typo (``epochs=100000000``) is refused before
#: any data loads instead of running for days: leaf name suffix -> the largest accepted value.
MAX_WORK = {"epochs": 10_000, "iter": 100_000, "resamples": 10_000}
#: Encoder names the features stage knows (benchmark/features/registry.py), checked before any data loads.
ENCODER_FORMS = {"text": ("minilm", "hf:<model-or-path>", "clip:<arch>/<pretrained>"),
                 "image": ("offline-descriptor", "clip:<arch>/<pretrained>")}
#: Integer method settings that count something (epochs, sizes, lengths): a default >= 1 stays >= 1.
_COUNT_WORDS = ("epoch", "dim", "size", "len", "hidden", "heads", "layers", "workers", "window", "threads",
                "experts", "stride", "inner", "ffn", "batch")


def _check_rank_cap(evaluation: dict, where: str = "") -> None:
    cap = evaluation.get("rank_cap")
    if cap is None or cap == 0:
        return
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < MAX_METRIC_K:
        raise ConfigError(f"{where}evaluation.rank_cap={cap!r}: must be null/0 (no cap) or an integer >= "
                          f"{MAX_METRIC_K}, the largest metric cut-off")


def check_seeds(seeds: Any, where: str) -> list[int]:
    """Seeds are distinct integers in [0, MAX_SEED]: a negative or huge seed fails inside a library after
    the data is prepared, and a repeated one runs the same run twice."""
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
    seen: set[int] = set()
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"{where}: seed {seed!r} is not an integer (seeds are integers in [0, {MAX_SEED}])")
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{where}: seed {seed} is out of range [0, {MAX_SEED}]")
        if seed in seen:
            raise ConfigError(f"{where}: seed {seed} is listed twice")
        seen.add(seed)
    return seeds


def check_encoder(name: Any, modality: str, where: str = "features") -> None:
    """An encoder name must have one of ENCODER_FORMS (None = no encoder); the model itself loads later."""
    if name is None:
        return
    forms = ENCODER_FORMS[modality]
    prefixes = tuple(f.split("<", 1)[0] for f in forms if "<" in f)
    plain = tuple(f for f in forms if "<" not in f)
    ok = isinstance(name, str) and (name in plain or any(name.startswith(f"{p}:") for p in plain)
                                    or any(name.startswith(p) and name[len(p):].strip() for p in prefixes))
    if not ok:
        raise ConfigError(f"{where}.{modality}_encoder={name!r}: unknown {modality} encoder; known: {', '.join(forms)}")


def _check_ranges(base: dict) -> None:
    _check_rank_cap(base["evaluation"])
    check_encoder(base["features"].get("text_encoder"), "text")
    check_encoder(base["features"].get("image_encoder"), "image")
    check_text_backend(base["features"])
    flat = flatten(base)
    for key, (low, high, low_ok) in RANGES.items():
        value = flat.get(key)
        if value is None or isinstance(value, bool):
            continue
        if not (low <= value if low_ok else low < value) or not value <= high:
            lo = f"[{low}" if low_ok else f"({low}"
            raise ConfigError(f"{key}={value!r} is out of range {lo}, {high}]")


def _check_method_ranges(name: str, cfg: dict, defaults: dict) -> None:
    """Numbers may not leave the sign/domain of their default: -3 epochs is an error here, not in gensim."""
    given, base = flatten(cfg), flatten(defaults)
    for key, value in given.items():
        default = base.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(default, bool) \
                or not isinstance(default, (int, float)):
            continue
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name}.{key}={value!r}: must be a finite number")
        leaf = key.rsplit(".", 1)[-1].lower()
        if isinstance(default, int) and default >= 1 and any(w in leaf for w in _COUNT_WORDS) and value < 1:
            raise ConfigError(f"{name}.{key}={value!r}: must be at least 1")
        if default >= 0 and value < 0:
            raise ConfigError(f"{name}.{key}={value!r}: must not be negative")
        cap = next((c for suffix, c in MAX_WORK.items() if leaf.endswith(suffix)), None)
        if cap is not None and value > cap:
            raise ConfigError(f"{name}.{key}={value!r}: at most {cap} (more would keep the run going for days)")
#: features.degrade (benchmark/features/degrade.py): absent by default = no degradation, and run
#: keys of suites without it stay as they were. A partial section is filled with these values.
DEGRADE_DEFAULTS: dict[str, Any] = {"drop_images": 0.0, "drop_texts": 0.0, "noise_std": 0.0, "seed": 0}


def check_degrade(degrade: Any, where: str = "features.degrade") -> dict[str, Any]:
    """The degradation knob filled with its defaults; a share outside [0, 1] or noise < 0 is a ConfigError."""
    if not isinstance(degrade, dict):
        raise ConfigError(f"{where}: expected a mapping, got {degrade!r}")
    for key, value in degrade.items():
        if key not in DEGRADE_DEFAULTS:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(DEGRADE_DEFAULTS)}")
        kind = (int,) if key == "seed" else (float,)
        if not _type_ok(value, kind):
            raise ConfigError(f"{where}.{key}: expected {kind[0].__name__}, got {value!r}")
    out = {**DEGRADE_DEFAULTS, **degrade}
    for key in ("drop_images", "drop_texts"):
        if not 0.0 <= float(out[key]) <= 1.0:
            raise ConfigError(f"{where}.{key}: a share must lie in [0, 1], got {out[key]!r}")
    if not float(out["noise_std"]) >= 0.0:
        raise ConfigError(f"{where}.noise_std: must be >= 0, got {out['noise_std']!r}")
    return out


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)


def _check_section(where: str, data: Any, schema: dict[str, tuple[type, ...]]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if key not in schema:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(schema)}")
        if not _type_ok(value, schema[key]):
            names = "/".join(t.__name__ for t in schema[key])
            raise ConfigError(f"{where}.{key}: expected {names}, got {value!r}")


def validate_suite(raw: Any, source: str) -> dict:
    """Check a parsed suite file against SCHEMA; return it merged over DEFAULTS."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a suite file must be a YAML mapping")
    for key in REQUIRED:
        if key not in raw:
            raise ConfigError(f"{source}: missing required key {key!r}")
    if isinstance(raw["name"], str):
        from benchmark.fsutil import safe_name

        safe_name(raw["name"], f"{source}: suite name")  # it names folders under results/ and reports/
    for key, value in raw.items():
        spec = SCHEMA.get(key)
        if spec is None:
            raise ConfigError(f"{source}: unknown key {key!r}; allowed: {', '.join(SCHEMA)}")
        if isinstance(spec, dict):
            _check_section(f"{source}: {key}", value, spec)
        elif not _type_ok(value, spec):
            raise ConfigError(f"{source}: {key}: expected {spec[0].__name__}, got {value!r}")
    for scale, over in raw.get("scales", {}).items():
        if scale not in SCALES:
            raise ConfigError(f"{source}: scales: unknown scale {scale!r}; known: {', '.join(SCALES)}")
        if not isinstance(over, dict) or set(over) - {"methods_config", "split", "evaluation", "features"}:
            raise ConfigError(f"{source}: scales.{scale}: may only override methods_config/split/evaluation/features")
    suite = deep_merge(DEFAULTS, raw)
    if suite["scale"] not in SCALES:
        raise ConfigError(f"{source}: scale {suite['scale']!r} is not one of {', '.join(SCALES)}")
    if suite["evaluation"]["candidate_pool"] not in CANDIDATE_POOLS:
        raise ConfigError(f"{source}: evaluation.candidate_pool must be one of {CANDIDATE_POOLS}")
    _check_rank_cap(suite["evaluation"], f"{source}: ")
    if not all(isinstance(m, str) for m in suite["methods"]) or not suite["methods"]:
        raise ConfigError(f"{source}: methods must be a non-empty list of method names")
    check_seeds(suite["seeds"], source)
    if "degrade" in suite["features"]:
        suite["features"]["degrade"] = check_degrade(suite["features"]["degrade"], f"{source}: features.degrade")
    return suite


def load_suite_file(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read suite file ({exc.strerror})") from None
    return validate_suite(raw, str(path))


def parse_override(item: str) -> tuple[str, Any]:
    """'a.b=3' -> ('a.b', 3); the value is parsed as YAML (numbers, booleans, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return key, value


def _assign(target: dict, key: str, value: Any, where: str, shown: str | None = None) -> None:
    """Set ``key`` (dotted) in ``target``; errors name the key as the user wrote it (``shown``)."""
    shown = shown or key
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            hint = did_you_mean(part, list(node)) if isinstance(node, dict) else ""
            raise ConfigError(f"--set {shown}: unknown key (no section {part!r} in {where}){hint}")
        node = node[part]
    leaf = parts[-1]
    if not isinstance(node, dict) or leaf not in node:
        hint = did_you_mean(leaf, list(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"--set {shown}: unknown key in {where}{hint}")
    current = node[leaf]
    if current is not None and value is not None and not _type_ok(value, (type(current),)):
        raise ConfigError(
            f"--set {shown}={value!r}: expected {type(current).__name__} (current value {current!r})"
        )
    node[leaf] = value


@dataclass
class RunConfig:
    """One run of the grid: a method at a seed, with its fully resolved configuration."""

    suite: str
    method: str
    seed: int
    scale: str
    dataset: dict
    split: dict
    features: dict
    evaluation: dict
    method_config: dict
    scaled_by_preset: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "suite": self.suite,
            "method": self.method,
            "seed": self.seed,
            "scale": self.scale,
            "dataset": self.dataset,
            "split": self.split,
            "features": self.features,
            "evaluation": self.evaluation,
            "method_config": self.method_config,
            "scaled_by_preset": self.scaled_by_preset,
        }

    def canonical_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), default=str)

    def identity_json(self) -> str:
        """What the run key hashes: the canonical config minus the default rank cap.

        The default cap changes no reported metric (every K <= 50 <= cap) and only shortens the
        stored ranks beyond it, so runs made before the cap existed (full ranks) keep their keys
        and are reused; any other cap, or none, is part of the key.
        """
        data = self.as_dict()
        if data["evaluation"].get("rank_cap") == DEFAULT_RANK_CAP:
            data["evaluation"] = {k: v for k, v in data["evaluation"].items() if k != "rank_cap"}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def method_preset(name: str, presets: Any, scale: str) -> dict:
    """A method's own preset at ``scale`` from its ``scales:`` section ({} when it has none)."""
    if not isinstance(presets, dict):
        raise ConfigError(f"method {name!r}: config.yaml scales: expected a mapping of scale -> values")
    unknown = set(presets) - set(SCALES)
    if unknown:
        raise ConfigError(f"method {name!r}: config.yaml scales: unknown scale(s) {sorted(unknown)}; "
                          f"known: {', '.join(SCALES)}")
    own = presets.get(scale) or {}
    if not isinstance(own, dict):
        raise ConfigError(f"method {name!r}: config.yaml scales.{scale}: expected a mapping, got {own!r}")
    return own


def resolve(
    suite: dict,
    defaults_for: dict[str, dict],
    scale: str | None = None,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    presets_for: dict[str, dict[str, dict]] | None = None,
) -> list[RunConfig]:
    """Expand a validated suite into run configs.

    ``defaults_for`` maps each method name to its default config, ``presets_for`` to its own scale
    presets (``Method.scale_presets()``: scale -> values). A method's preset applies under the
    suite file's ``methods_config``; a suite preset entry for the method
    (``scales.<scale>.methods_config.<method>``) replaces it and applies over the suite file, as
    before presets moved into the methods, so those runs keep their keys. Overrides address the
    suite (``evaluation.candidate_pool=domain``) or a method (``item2vec.epochs=5``).
    """
    scale = scale or suite["scale"]
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if seeds is not None:
        check_seeds(seeds, "seeds")
    chosen = methods or suite["methods"]
    for name in chosen:
        if name not in defaults_for:
            raise ConfigError(f"unknown method {name!r}; known: {', '.join(sorted(defaults_for))}")
    preset = suite["scales"].get(scale, {})
    base = {k: copy.deepcopy(suite[k]) for k in ("dataset", "split", "features", "evaluation")}
    for section in ("split", "evaluation", "features"):
        if section in preset:
            _check_section(f"scales.{scale}.{section}", preset[section], SCHEMA[section])  # type: ignore[arg-type]
            base[section] = deep_merge(base[section], preset[section])
    method_cfgs: dict[str, dict] = {}
    scaled: dict[str, dict] = {}
    suite_presets = preset.get("methods_config", {})
    for name in chosen:
        cfg = copy.deepcopy(defaults_for[name])
        in_suite = suite["methods_config"].get(name, {})
        if name in suite_presets:  # the suite's own preset for the method replaces the method's
            own = suite_presets[name] or {}
            layers = ((in_suite, "suite"), (own, f"scale preset {scale!r}"))
            scaled[name] = flatten(own)
        else:
            own = method_preset(name, (presets_for or {}).get(name, {}), scale)
            layers = ((own, f"its config.yaml scale preset {scale!r}"), (in_suite, "suite"))
            set_by_suite = flatten(in_suite)
            scaled[name] = {k: v for k, v in flatten(own).items() if k not in set_by_suite}
        for layer, where in layers:
            for key, value in flatten(layer).items():
                _assign(cfg, key, value, f"method {name!r} config ({where})")
        method_cfgs[name] = cfg
    if "degrade" in base["features"]:  # suite or preset: filled with defaults so --set finds every key
        base["features"]["degrade"] = check_degrade(base["features"]["degrade"])
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("features.degrade.") and "degrade" not in base["features"]:
            base["features"]["degrade"] = dict(DEGRADE_DEFAULTS)  # --set switches the knob on
        head = key.split(".", 1)[0]
        if key == "features.device":  # absent = cpu, so CPU runs keep their run keys (benchmark/devices.py checks it)
            base["features"].pop("device", None)
            if value not in (None, "cpu"):
                base["features"]["device"] = str(value)
        elif key == "features.max_tokens":  # absent = the text encoder's own limit, so runs keep their keys
            base["features"].pop("max_tokens", None)
            if value is not None:
                if not _type_ok(value, (int,)):
                    raise ConfigError(f"--set {key}={value!r}: expected int (a token count) or null")
                base["features"]["max_tokens"] = value
        elif key == "features.text_backend":  # absent = torch, so fp32 runs keep their run keys
            base["features"].pop("text_backend", None)
            if value not in (None, "torch"):
                base["features"]["text_backend"] = str(value)
        elif key in OPTIONAL_DATASET_KEYS:  # a dataset card's defaults; absent keys keep older run keys
            base["dataset"].pop(key.split(".")[1], None)
            if value is not None:
                base["dataset"][key.split(".")[1]] = str(value)
        elif head in base:
            _assign(base, key, value, "suite")
        elif head in method_cfgs and "." in key:
            _assign(method_cfgs[head], key.split(".", 1)[1], value, f"method {head!r} config", shown=key)
        else:
            known = ", ".join(list(base) + sorted(method_cfgs))
            raise ConfigError(f"--set {key}: unknown key{did_you_mean(head, list(base) + sorted(method_cfgs))} "
                              f"(first part must be one of: {known})")
    if base["evaluation"]["candidate_pool"] not in CANDIDATE_POOLS:
        raise ConfigError(f"evaluation.candidate_pool must be one of {CANDIDATE_POOLS}")
    if "degrade" in base["features"]:
        base["features"]["degrade"] = check_degrade(base["features"]["degrade"])
    if base["features"].get("text_backend") == "auto":
        base["features"]["text_backend"] = auto_text_backend(base["features"])
    if base["features"].get("text_backend", "torch") in (None, "torch"):  # the reference: keys as before
        base["features"].pop("text_backend", None)
    _check_ranges(base)
    for name, cfg in method_cfgs.items():
        _check_method_ranges(name, cfg, defaults_for[name])
    return [
        RunConfig(
            suite=suite["name"], method=name, seed=seed, scale=scale,
            dataset=base["dataset"], split=base["split"], features=base["features"],
            evaluation=base["evaluation"], method_config=method_cfgs[name],
            scaled_by_preset=scaled[name],
        )
        for name in chosen
        for seed in (seeds if seeds is not None else suite["seeds"])
    ]
