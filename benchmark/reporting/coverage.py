"""What a report did not run: the suite's methods left out (``--methods``), and what running them needs.

The paper preset (``--scale paper``) runs only the methods whose fit finishes in about an hour
on a 2-core machine; the rest would take days there. A report that silently shows fewer columns
than its suite reads as if the others failed, so it names them and says how to run them.
"""

from __future__ import annotations

from collections.abc import Iterable

from benchmark import registry
from benchmark.errors import BenchmarkError


def device_methods(methods: Iterable[str]) -> list[str]:
    """The methods among ``methods`` whose config has a ``device`` key (they can run on cuda)."""
    out = []
    for name in methods:
        try:
            if "device" in registry.get_method(name).default_config():
                out.append(name)
        except BenchmarkError:  # an unregistered name in an old suite file: nothing to say about it
            continue
    return out


def not_run_lines(suite: str, suite_methods: list[str], ran: Iterable[str], scale: str,
                  gpu_methods: list[str]) -> list[str]:
    """Markdown lines for the suite's methods that have no run in this report ([] when all ran).

    ``gpu_methods``: those of the missing methods that take a ``device`` key (:func:`device_methods`).
    """
    ran = set(ran)
    missing = [m for m in suite_methods if m not in ran]
    if not missing:
        return []
    why = (" (the paper preset runs only the methods whose training finishes in about an hour on 2 CPU cores; "
           "these would take days there)" if scale == "paper" else " (`--methods` restricted the run)")
    gpu = [m for m in missing if m in gpu_methods]
    lines = [
        "### Not run in this report", "",
        f"Suite `{suite}` also has {len(missing)} method(s) that did not run at the {scale} scale{why}: "
        + ", ".join(f"`{m}`" for m in missing) + ".",
        "",
        f"To run them, add them to `--methods` with `--scale {scale}` and give the runs more machine: "
        "`--executor ray` with `RAY_ADDRESS` set to a Ray cluster runs each (method, seed) as a task on "
        "the cluster; on a machine with a GPU, `--set <method>.device=cuda` moves a method's training there"
        + (f" (methods with a `device` key: {', '.join(f'`{m}`' for m in gpu)})" if gpu else
           " (none of these methods has a `device` key: they run on CPU only)")
        + ". Finished runs are kept by run key, so a later run adds only the missing columns.",
    ]
    return lines
