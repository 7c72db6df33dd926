"""Every workaround for the dependency stack, in one place (README.md).

Call :func:`apply` before importing torchvision, open_clip, sentence-transformers or RecBole.
Each item names the upstream problem it works around; tests/test_compat.py checks each.
Pins that need no code live in pyproject.toml: ``numpy<2`` (RecBole and ray 2.6.3 use
``np.float_``/``np.bool8``), ``pandas<3`` (copy-on-write breaks RecBole's feature loading),
``setuptools<81`` (ray 2.6.3 imports ``pkg_resources``), ``ray<=2.6.3`` (RecBole's pin).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

_applied = False


def _torchvision_needs_schemas() -> bool:
    """torchvision 0.28.0 from PyPI is a CUDA build; with the CPU torch its C++ extension does
    not load and ``import torchvision`` fails with "operator torchvision::nms does not exist"."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute lookup is the probe
    except (AttributeError, RuntimeError):
        return True
    return False


def define_torchvision_schemas() -> bool:
    """Define the two operator schemas torchvision registers fake kernels for at import time.

    With the schemas present, pure-Python torchvision (transforms, model definitions) imports and
    works, which is all open_clip, timm, sentence-transformers and transformers need. ``ops.nms``,
    ``roi_align`` and ``io.decode_jpeg`` stay unavailable: we decode images with PIL.
    Returns True when the schemas were defined here.
    """
    if not _torchvision_needs_schemas():
        return False
    import torch

    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - must stay alive
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    define_torchvision_schemas._lib = lib  # type: ignore[attr-defined]  # keep the registration alive
    return True


def recbole_torch_load_full() -> None:
    """torch >= 2.6 defaults ``torch.load(weights_only=True)``; RecBole 1.2.1 saves checkpoints
    holding its Config object and numpy state, so its reload fails. Make RecBole's own module
    call torch.load with ``weights_only=False`` (checkpoints it wrote itself), nothing else."""
    if importlib.util.find_spec("recbole") is None:
        return
    import recbole.quick_start.quick_start as qs
    import recbole.trainer.trainer as tr
    import torch

    @functools.wraps(torch.load)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)

    class _TorchShim:
        def __getattr__(self, name):
            return load if name == "load" else getattr(torch, name)

    for module in (qs, tr):
        if getattr(module, "torch", None) is torch:
            module.torch = _TorchShim()


def recbole_sequential_models():  # noqa: ANN201 - the module recbole.model.sequential_recommender
    """Import RecBole's sequential models with autograd's anomaly mode left as it was.

    RecBole 1.2.1's ``sequential_recommender/sine.py`` runs ``torch.autograd.set_detect_anomaly(True)``
    at import time, so importing any RecBole sequential model (the package imports them all) turns
    anomaly mode on for the whole process: every autograd op then records its Python stack. Here
    GRU4Rec trained ~2x slower for it, and so would every torch method fitted later in the same
    process. The package is imported once (Python caches it), and the mode restored after.
    """
    import torch

    before, nan_check = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    import recbole.model.sequential_recommender as seq

    torch.autograd.set_detect_anomaly(before, check_nan=nan_check)
    return seq


def quiet_offline_hub() -> None:
    """No model hub is reachable here: make transformers / huggingface_hub fail fast on a missing
    file instead of retrying the network, unless the user set these variables themselves."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


#: ray 2.6 imports pkg_resources, and setuptools warns about it once per process: in the driver
#: and in every Ray worker (issue: noise on the console for each job). Filtered here and, through
#: PYTHONWARNINGS, in the workers (they inherit the environment of the process that starts Ray).
RAY_PKG_RESOURCES = "ignore:pkg_resources is deprecated as an API:UserWarning"


def quiet_ray_pkg_resources() -> None:
    """Hide setuptools' pkg_resources deprecation warning that importing ray 2.6 raises."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning)
    filters = os.environ.get("PYTHONWARNINGS", "")
    if RAY_PKG_RESOURCES not in filters:
        os.environ["PYTHONWARNINGS"] = ",".join(f for f in (filters, RAY_PKG_RESOURCES) if f)


def apply() -> None:
    """Apply every workaround once; safe to call many times."""
    global _applied
    if _applied:
        return
    quiet_offline_hub()
    quiet_ray_pkg_resources()
    define_torchvision_schemas()
    _applied = True
