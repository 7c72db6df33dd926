"""A suite resolved into run configs, every value checked before any data loads; a run's key.

The run key hashes the resolved config, the split manifest and the dataset fingerprint (never
module paths), so results stay reusable across versions that compute the same thing.
"""

from __future__ import annotations

import hashlib
import logging

from benchmark import registry
from benchmark.config import RunConfig, flatten, load_suite_file, resolve
from benchmark.devices import check_devices
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.inputs import Inputs

log = logging.getLogger(__name__)


def run_key(run: RunConfig, inputs: Inputs) -> str:
    payload = run.identity_json() + inputs.split.manifest_hash + inputs.dataset.fingerprint
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan(suite: str, scale: str | None = None, methods: list[str] | None = None,
         seeds: list[int] | None = None, overrides: tuple[str, ...] = (),
         allow_extra_methods: bool = False) -> list[RunConfig]:
    """Resolve a suite into its run configs (validates everything before any work starts).

    ``methods`` must be among the suite's own methods; others only with ``allow_extra_methods``,
    and then the config they run with (their defaults and own scale preset) is logged. Every
    run's devices and method config (``Method.check_config``) are checked here, before any data loads.
    """
    suite_cfg = load_suite_file(registry.suite_path(suite))
    names = methods or suite_cfg["methods"]
    classes = {name: registry.get_method(name) for name in names}
    extra = [n for n in names if n not in suite_cfg["methods"]]
    if extra and not allow_extra_methods:
        raise BenchmarkError(
            f"method(s) {', '.join(extra)} are not in suite {suite_cfg['name']!r} (its methods: "
            f"{', '.join(suite_cfg['methods'])}). "
            "Pass --allow-extra-methods to run them too (with their own defaults and scale presets)")
    runs = resolve(suite_cfg, {name: cls.default_config() for name, cls in classes.items()}, scale=scale,
                   methods=names, seeds=seeds, overrides=overrides,
                   presets_for={name: cls.scale_presets() for name, cls in classes.items()})
    # a missing GPU fails here, before any work: the feature encoders' device, then each method's
    check_devices([("features", runs[0].features), *((run.method, run.method_config) for run in runs)])
    for run in runs:  # and a value the method cannot run with (one line, exit 2)
        try:
            classes[run.method].check_config(dict(run.method_config))
        except BenchmarkError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{run.method}: config does not validate ({type(exc).__name__}: {exc})") from None
    for run in runs:
        if run.method in extra and run.seed == runs[0].seed:
            shown = ", ".join(f"{k}={v}" for k, v in flatten(run.method_config).items()
                              if any(w in k for w in ("epoch", "batch", "dim", "lr")))
            log.warning("%s is not a method of suite %s: it runs with its own defaults and scale preset: %s",
                        run.method, run.suite, shown or "see its config.yaml")
    return runs
