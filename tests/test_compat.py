"""Each workaround in benchmark/compat.py does what its docstring says."""

from __future__ import annotations

import os
import subprocess
import sys


def test_torchvision_and_open_clip_import_after_apply() -> None:
    code = ("from benchmark import compat; compat.apply(); import torchvision, open_clip, sentence_transformers; "
            "from torchvision import transforms; print(transforms.Resize(8))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)  # a guard, not a timing test
    assert out.returncode == 0, out.stderr[-800:]
    assert "Resize" in out.stdout


def test_apply_is_idempotent(monkeypatch) -> None:
    """Applying twice, even past the once-only guard, leaves the same state as applying once."""
    from benchmark import compat

    monkeypatch.setattr(compat, "_applied", False)
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    compat.apply()
    after_one = os.environ["PYTHONWARNINGS"]
    compat.apply()
    monkeypatch.setattr(compat, "_applied", False)
    compat.apply()
    assert compat._applied
    assert os.environ["PYTHONWARNINGS"] == after_one == f"default,{compat.RAY_PKG_RESOURCES}"
    assert compat.define_torchvision_schemas() is False  # schemas in place: not defined a second time
    from torchvision import transforms

    assert transforms.Resize(8).size == 8


def test_recbole_imports_and_reloads_its_own_checkpoint(tmp_path) -> None:
    """torch>=2.6 weights_only=True breaks RecBole's checkpoint reload; the shim restores it."""
    from benchmark import compat

    compat.apply()
    compat.recbole_torch_load_full()
    import numpy as np
    import recbole.trainer.trainer as tr

    path = tmp_path / "ckpt.pth"
    import torch

    torch.save({"config": {"a": np.array([1, 2])}, "state_dict": {}}, path)
    loaded = tr.torch.load(path)
    assert loaded["config"]["a"].tolist() == [1, 2]


def test_numpy_pin_keeps_recbole_aliases() -> None:
    import numpy as np

    assert int(np.__version__.split(".")[0]) < 2  # np.float_ / np.bool8 exist for RecBole and ray 2.6
    assert hasattr(np, "float_")


def test_recbole_sequential_import_leaves_anomaly_mode_off() -> None:
    """RecBole's sine.py switches autograd anomaly mode on at import; the compat import does not.

    In a fresh interpreter: the plain import really turns it on (the upstream problem is still
    there), and the compat import leaves it as it was.
    """
    plain = "import torch, recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())"
    shim = ("import torch; from benchmark import compat; m = compat.recbole_sequential_models(); "
            "print(torch.is_anomaly_enabled(), m.GRU4Rec.__name__)")
    outs = [subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, timeout=600) for c in (plain, shim)]
    assert all(o.returncode == 0 for o in outs), [o.stderr[-500:] for o in outs]
    assert outs[0].stdout.split()[-1] == "True"
    assert outs[1].stdout.split()[-2:] == ["False", "GRU4Rec"]


def test_ray_workers_start_without_the_pkg_resources_warning(monkeypatch) -> None:
    """Ray workers inherit PYTHONWARNINGS from the driver: importing ray there prints nothing."""
    import os
    import subprocess
    import sys

    from benchmark import compat

    probe = [sys.executable, "-c", "import ray"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    noisy = subprocess.run(probe, capture_output=True, text=True, env=env, check=True).stderr
    assert "pkg_resources is deprecated" in noisy  # setuptools<81 warns (the bug the filter hides)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    compat.quiet_ray_pkg_resources()
    quiet = subprocess.run(probe, capture_output=True, text=True, env=dict(os.environ), check=True).stderr
    assert "pkg_resources" not in quiet
