"""The paper-preset bench's pieces: per-stage peak memory, the verdict on the targets, the preset itself."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_paper_preset as bench  # noqa: E402
from benchtools import Stage  # noqa: E402


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-stage peaks need Linux /proc")
def test_stage_peak_is_the_stages_own() -> None:
    with Stage("big") as big:
        block = np.ones(48 * 2**20 // 8)  # 48 MiB, touched
        del block
    with Stage("small") as small:
        np.ones(1024).sum()
    if not big.per_stage:
        pytest.skip("this kernel refuses the high-water-mark reset")
    assert big.peak_gib - small.peak_gib > 40 / 1024  # the 48 MiB was freed before the second stage
    assert big.seconds >= 0 and big.cpu_s >= 0


def _row(stage: str, seconds: float, gib: float) -> dict:
    return {"stage": stage, "seconds": seconds, "cpu_s": seconds, "peak_rss_gib": gib, "per_stage_peak": True}


def test_table_sums_time_takes_the_largest_peak_and_judges_the_targets() -> None:
    ok = bench._table([_row("load", 600, 3.0), _row("clip", 1200, 5.0)], "paper")
    assert "1800.0s" in ok and "5.00GiB" in ok and "<= 60 min holds, <= 16 GiB holds" in ok
    slow = bench._table([_row("load", 3000, 3.0), _row("pgg", 700, 17.0)], "paper")
    assert "<= 60 min FAILS, <= 16 GiB FAILS" in slow


def test_paper_preset_plan_records_what_it_scaled() -> None:
    runs = {r.method: r for r in bench._plan("paper", bench.PRESET_METHODS.split(","), 0, ())}
    assert list(runs) == ["clip", "item2vec", "pgg", "popularity", "random"]
    assert runs["item2vec"].scaled_by_preset == {"workers": 2, "epochs": 5}
    assert runs["pgg"].method_config["graph_stats"] is False
    assert runs["pgg"].scaled_by_preset == {"graph_stats": False, "confidence.epochs": 2, "graph.epochs": 1}
    assert runs["clip"].dataset["name"] == "xmarket-sim"  # as `run --dataset xmarket-sim`
    # CLIP's 77-token context: the paper preset truncates MiniLM prompts there; other presets do not
    assert runs["clip"].features["max_tokens"] == 77
    small = bench._plan("small", ["clip"], 0, ())[0]
    assert "max_tokens" not in small.features
