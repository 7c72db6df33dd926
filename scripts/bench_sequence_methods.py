"""Training samples/s of every transformer-based method next to RecBole 1.2.1's SASRec at equal size.

Usage:
    PYTHONPATH=. python scripts/bench_sequence_methods.py --scale small --users 2000 --data-dir data

One run, one table (issue 25): each of ``sasrec`` (ours), ``unisrec``, ``missrec``, ``vqrec``,
``unim2rec`` and ``transrec`` fits once with its own ``--scale`` preset (the sizes the main job
trains), one epoch per training stage and no validation carve-out, on the twin's training
sequences (xmarket-sim, SYNTHETIC; ``--users`` keeps the first N users to bound the time) with
``--threads`` torch threads (``--validate`` keeps the validation carve-out, so the seconds include
each epoch's validation as in a run). Its samples/s is set beside RecBole's SASRec (the anchor,
``benchtools.recbole_sasrec_epoch``) at the method's encoder sizes -- hidden, layers, heads,
feed-forward, max_len -- on the same sequences; an anchor is measured once per distinct size.

A "sample" is one (history -> next item) prefix example, RecBole's training unit. Where a method
counts windows or sequences (UniM2Rec, TransRec), its count is converted to the prefixes those
windows hold (the table says so). A method's seconds are its whole fit (setup such as VQ-Rec's
codes, MISSRec's k-means or TransRec's item encoders included); the anchor's are one epoch of
``Trainer._train_epoch``. Both wall and CPU seconds (this process) are printed: on a shared
machine the wall figures stretch with the load, samples per CPU-second much less.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchtools import Timed, cpu_seconds, recbole_sasrec_timed

from benchmark import registry
from benchmark.data.model import Sequences, TrainView
from benchmark.data.sources import load_dataset
from benchmark.data.split import cached_split, train_view
from benchmark.errors import BenchmarkError
from benchmark.features import compute_features
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.shared.sequence import sequence_windows

METHODS = ("sasrec", "unisrec", "missrec", "vqrec", "unim2rec", "transrec")
EPOCH_KEYS = ("epochs", "pretrain_epochs", "finetune_epochs", "stage1_epochs")


def twin(scale: str, data_dir: Path, users: int | None) -> tuple[TrainView, ItemFeatures]:
    """The twin's training view (first ``users`` sequences) and cached features, as the runner builds them."""
    dataset = load_dataset("xmarket-sim", data_dir, scale=scale, seed=0, progress=False)
    split = cached_split(dataset, data_dir / ".cache" / "splits", seed=0)
    view = train_view(dataset, split)
    features = compute_features(dataset.items, text_encoder="minilm", image_encoder=None,
                                cache_dir=data_dir / ".cache" / "features", progress=False, word_drop=0.15)
    if users is not None and users < len(view.sequences):
        s = view.sequences
        end = int(s.offsets[users])
        seqs = Sequences(users=s.users[:users], offsets=s.offsets[: users + 1], items=s.items[:end],
                         day=s.day[:end], rating=s.rating[:end])
        view = TrainView(sequences=seqs, items=view.items,
                         item_train_count=np.bincount(seqs.items, minlength=view.n_items).astype(np.int64))
    return view, features


def bench_config(method: str, scale: str, validate: bool = False) -> dict[str, Any]:
    """The method's defaults + its ``scale`` preset, one epoch per stage (a stage set to 0 stays off);
    no validation carve-out unless ``validate`` (then each validated stage scores its epoch, as in a run)."""
    cls = registry.get_method(method)
    cfg = {**cls.default_config(), **dict(cls.scale_presets().get(scale, {}))}
    if not validate:
        cfg["valid_fraction"] = 0.0
    for key in EPOCH_KEYS:
        if key in cfg and int(cfg[key]) > 0:
            cfg[key] = 1
    return cfg


@dataclass(frozen=True)
class AnchorSize:
    """RecBole SASRec sizes equal to a method's sequence encoder."""

    hidden: int
    layers: int
    heads: int
    inner: int
    max_len: int

    def label(self) -> str:
        return f"d{self.hidden} L{self.layers} h{self.heads} ff{self.inner} n{self.max_len}"


def anchor_size(method: str, cfg: dict[str, Any]) -> AnchorSize:
    """MISSRec's encoder is one interest-encoder layer + one item-decoder layer: two layers at its width."""
    layers = 2 if method == "missrec" else int(cfg["n_layers"])
    return AnchorSize(int(cfg["dim"]), layers, int(cfg["n_heads"]), int(cfg["inner"]), int(cfg["max_len"]))


def mean_window_prefixes(sequences: Sequences, max_len: int) -> float:
    """Prefix examples per causal window (``sequence_windows``: one per sequence with >= 2 items)."""
    _, _, lengths = sequence_windows(sequences, max_len)
    return float(lengths.sum()) / max(len(lengths), 1)


def mean_cpc_targets(sequences: Sequences, n_targets: int) -> float:
    """TransRec's stage-2 targets per sequence (``split_sequence``: the last min(l, len - 1) items)."""
    lengths = sequences.lengths[sequences.lengths >= 2]
    return float(np.minimum(n_targets, lengths - 1).sum()) / max(len(lengths), 1)


def prefixes_seen(method: str, stats: dict[str, Any], cfg: dict[str, Any], sequences: Sequences) -> tuple[int, str]:
    """(prefix examples the fit trained, how they were counted) from its training budget."""
    stages = stats["training"]["stages"]
    if method == "unim2rec":  # budget counts windows
        per = mean_window_prefixes(sequences, int(cfg["max_len"]))
        return round(sum(s["examples_seen"] for s in stages) * per), "windows x prefixes/window"
    if method == "transrec":  # budget counts sequences: stage 1 causal windows, stage 2 CPC targets
        per1 = mean_window_prefixes(sequences, int(cfg["max_len"]))
        per2 = mean_cpc_targets(sequences, int(cfg["n_targets"]))
        n = sum(s["examples_seen"] * (per1 if s["stage"].startswith("stage1") else per2) for s in stages)
        return round(n), "sequences x prefixes (stage 1) / targets (stage 2)"
    return int(stats["training"]["examples_seen"]), ""


@dataclass(frozen=True)
class Row:
    name: str
    samples: int
    seconds: float
    cpu_s: float
    anchor: AnchorSize | None
    note: str = ""

    @property
    def rate(self) -> float:
        return Timed(self.samples, self.seconds, self.cpu_s).per_s

    @property
    def cpu_rate(self) -> float:
        return Timed(self.samples, self.seconds, self.cpu_s).per_cpu_s


def fit_method(method: str, view: TrainView, features: ItemFeatures, scale: str, threads: int,
               validate: bool = False) -> tuple[Row, dict]:
    """One fit at the bench config; its row (prefixes, wall seconds) and the config used."""
    cls = registry.get_method(method)
    cfg = bench_config(method, scale, validate)
    model = cls()
    ctx = RunContext(seed=0, workers=threads)
    t0, c0 = time.perf_counter(), cpu_seconds()
    with ctx.threads():
        model.fit(view, features, cfg, ctx)
    seconds, cpu_s = time.perf_counter() - t0, cpu_seconds() - c0
    samples, note = prefixes_seen(method, model.stats, cfg, view.sequences)
    label = f"ours {method} ({scale}, 1 ep/stage{', validated' if validate else ''})"
    return Row(label, samples, seconds, cpu_s, anchor_size(method, cfg), note), cfg


def table(rows: list[Row], anchors: dict[AnchorSize, Row]) -> str:
    """The printed table: every method's samples per wall and per CPU second, and both ratios to the
    anchor of its size (per CPU-second is the steadier one on a loaded machine)."""
    head = (f"{'trainer':<44} {'samples':>8} {'wall s':>7} {'CPU s':>7} {'/s':>7} {'/CPU-s':>7} "
            f"{'x anchor':>8} {'(CPU)':>6}  anchor size / note")

    def line(row: Row, ratio: str, ratio_cpu: str, where: str) -> str:
        return (f"{row.name:<44} {row.samples:8d} {row.seconds:7.1f} {row.cpu_s:7.1f} {row.rate:7,.0f} "
                f"{row.cpu_rate:7,.0f} {ratio:>8} {ratio_cpu:>6}  {where}")

    lines = [head] + [line(row, "1.00", "1.00", size.label()) for size, row in anchors.items()]
    for row in rows:
        base = anchors.get(row.anchor) if row.anchor is not None else None
        ratio = f"{row.rate / base.rate:.2f}" if base is not None else "-"
        ratio_cpu = f"{row.cpu_rate / base.cpu_rate:.2f}" if base is not None else "-"
        where = (row.anchor.label() if row.anchor is not None else "") + (f"; {row.note}" if row.note else "")
        lines.append(line(row, ratio, ratio_cpu, where))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("tiny", "small"), default="small")
    parser.add_argument("--users", type=int, default=2000, help="first N training users (0 = all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the runner's default is 1)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list out of {','.join(METHODS)}")
    parser.add_argument("--validate", action="store_true",
                        help="keep the preset's validation carve-out: fits score each epoch, as in a run")
    parser.add_argument("--no-anchor", action="store_true", help="methods only (e.g. a before/after of one method)")
    parser.add_argument("--anchor-batch", type=int, default=2048, help="RecBole train_batch_size (its default)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UIE_DATA_DIR", "data")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    view, features = twin(args.scale, args.data_dir, args.users or None)
    print(f"data: xmarket-sim '{args.scale}' (SYNTHETIC), {len(view.sequences)} users, {view.n_items} items, "
          f"{len(view.sequences.items)} interactions; torch threads {args.threads}; load {os.getloadavg()[0]:.1f}",
          flush=True)
    rows: list[Row] = []
    anchors: dict[AnchorSize, Row] = {}
    for method in methods:
        try:
            row, _ = fit_method(method, view, features, args.scale, args.threads, args.validate)
        except BenchmarkError as exc:  # e.g. VQ-Rec's codes need more training items than --users leaves
            print(f"  {method}: not measured ({exc})", flush=True)
            continue
        rows.append(row)
        print(f"  {row.name}: {row.samples} samples in {row.seconds:.1f}s ({row.cpu_s:.1f} CPU-s)", flush=True)
        size = row.anchor
        if size is not None and size not in anchors and not args.no_anchor:
            t = recbole_sasrec_timed(view.sequences, size.hidden, size.layers, size.heads, size.max_len,
                                     args.anchor_batch, args.threads, inner=size.inner)
            anchors[size] = Row(f"RecBole 1.2.1 SASRec (CE, {size.hidden}d)", t.samples, t.seconds, t.cpu_s, size)
            print(f"  anchor {size.label()}: {t.samples} samples in {t.seconds:.1f}s ({t.cpu_s:.1f} CPU-s)",
                  flush=True)
    print(f"\nload {os.getloadavg()[0]:.1f} at the end\n" + table(rows, anchors))


if __name__ == "__main__":
    main()
