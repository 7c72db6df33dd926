"""Reliability II (issue 26): relocatable data, no reads through planted links, range-checked numbers,
CLI values checked before any data loads, verified artefacts, honest fetches, whole reports, exact
Popularity. One case per item, on the tiny twin with the cheapest methods (tests/test_faults.py has the rest).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmark.data.sources import load_dataset
from benchmark.grid.plan import plan, run_key
from benchmark.inputs import prepare_inputs

ROOT = Path(__file__).resolve().parents[1]
SUITE = "xmarket-matching"


def _main(capsys, *argv: str) -> tuple[int, str]:
    from benchmark.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().err


# -- 1. relocatable data ------------------------------------------------------------------------


def test_a_moved_or_regenerated_twin_keeps_run_keys_and_images(tiny_data_dir, tmp_path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data_dir, tmp_path / "copy", symlinks=True)  # cp -a, caches included
    (tmp_path / "copy").rename(moved)
    elsewhere = tmp_path / "elsewhere" / "data"  # a twin generated at another path
    load_dataset("xmarket-sim", elsewhere, scale="tiny", seed=0, progress=False)
    (clip,) = plan(SUITE, scale="tiny", methods=["clip"])
    seen = []
    for data in (tiny_data_dir, moved, elsewhere):
        # the image side of CLIP's inputs (the text side does not depend on where the data lies)
        inputs = prepare_inputs(clip.dataset, clip.split, dict(clip.features, text_encoder=None), data, clip.scale,
                                progress=False)
        meta = inputs.dataset.meta
        assert meta["images_local"] == meta["images_with_url"] > 200  # no image refused as "outside"
        assert all(p.startswith(str(data.resolve())) for p in inputs.dataset.items.image_path if p)
        seen.append((run_key(clip, inputs), inputs.dataset.fingerprint, inputs.features.image.tobytes(),
                     inputs.features.image_mask.tobytes()))
    assert seen[0] == seen[1] == seen[2]
