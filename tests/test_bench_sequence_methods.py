"""The sequence-methods bench's pieces: the shared RecBole SASRec anchor, the prefix counts, the table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_sequence_methods as bench  # noqa: E402
from benchtools import recbole_sasrec_epoch  # noqa: E402

from benchmark.data.model import Sequences  # noqa: E402


def _sequences(lengths: list[int], n_items: int = 40, seed: int = 0) -> Sequences:
    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    total = int(offsets[-1])
    return Sequences(users=np.arange(len(lengths), dtype=np.int64), offsets=offsets,
                     items=rng.integers(0, n_items, total).astype(np.int32), day=np.zeros(total, dtype=np.int64),
                     rating=np.ones(total, dtype=np.float32))


def test_recbole_anchor_trains_every_prefix_of_the_leave_two_out_training_part() -> None:
    lengths = [4, 5, 8, 12, 6, 30] * 5
    samples, seconds = recbole_sasrec_epoch(_sequences(lengths), hidden=16, layers=1, heads=2, max_len=10,
                                            batch=64, threads=1)
    # RecBole's leave-one-out keeps each user's last two prefixes for validation and test (users
    # of >= 4 items): n - 1 prefixes with at least one history item, n - 3 of them train
    assert samples == sum(n - 3 for n in lengths)
    assert seconds > 0


def test_window_and_target_counts_convert_windows_and_sequences_to_prefixes() -> None:
    seqs = _sequences([1, 2, 4, 30])
    # windows of sequences with >= 2 items hold min(len - 1, max_len) prefixes: 1, 3, 10
    assert bench.mean_window_prefixes(seqs, 10) == (1 + 3 + 10) / 3
    # CPC targets: min(5, len - 1) of each sequence with >= 2 items: 1, 3, 5
    assert bench.mean_cpc_targets(seqs, 5) == (1 + 3 + 5) / 3
    stats = {"training": {"examples_seen": 6, "stages": [{"stage": "pretrain", "examples_seen": 6}]}}
    assert bench.prefixes_seen("unim2rec", stats, {"max_len": 10}, seqs) == (28, "windows x prefixes/window")
    assert bench.prefixes_seen("unisrec", stats, {"max_len": 10}, seqs) == (6, "")


def test_bench_config_runs_one_epoch_per_stage_without_validation_and_keeps_stages_that_are_off() -> None:
    cfg = bench.bench_config("unim2rec", "small")
    assert cfg["epochs"] == 1 and cfg["finetune_epochs"] == 0 and cfg["valid_fraction"] == 0.0
    assert cfg["dim"] == 64  # the small preset's size, not the paper's
    assert bench.anchor_size("missrec", bench.bench_config("missrec", "small")).layers == 2


def test_table_sets_each_method_beside_the_anchor_of_its_size() -> None:
    small, wide = bench.AnchorSize(64, 2, 2, 256, 50), bench.AnchorSize(300, 2, 4, 256, 50)
    anchors = {small: bench.Row("RecBole 64", 1000, 10.0, 5.0, small),
               wide: bench.Row("RecBole 300", 1000, 20.0, 10.0, wide)}
    rows = [bench.Row("ours a", 3000, 10.0, 2.5, small), bench.Row("ours b", 500, 10.0, 10.0, wide, "note")]
    out = bench.table(rows, anchors)
    line_a = next(line for line in out.splitlines() if line.startswith("ours a"))
    line_b = next(line for line in out.splitlines() if line.startswith("ours b"))
    # a: 300/s vs 100/s wall, 1200 vs 200 per CPU-s; b: 50/s vs 50/s wall, 50 vs 100 per CPU-s
    def ratios(line: str) -> list[str]:  # the two columns before the anchor size
        return line.split("  d")[0].split()[-2:]

    assert ratios(line_a) == ["3.00", "6.00"] and "d64 L2 h2 ff256 n50" in line_a
    assert ratios(line_b) == ["1.00", "0.50"] and "d300" in line_b and line_b.endswith("note")

