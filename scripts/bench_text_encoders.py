"""Time the ``minilm`` text backends on the same item prompts in one run and recommend one for this machine.

The twin's item prompts (``benchmark.features.prompt.build_prompts``, a seeded sample of
``--items``) are encoded the way the features stage does (length-sorted batches of
``--batch-size``) by every backend: torch fp32 (the reference), torch bf16 autocast, ONNX Runtime
fp32 and ONNX Runtime int8 (dynamic quantisation). Repeats are interleaved (ABBA order, so every
backend sees the same load); each backend's model load and ONNX export happen before the timing.
Prints items/s (median over repeats), the ratio to torch fp32 and the mean and min cosine of its
vectors to torch fp32's. A backend is eligible at mean cosine >= 0.99; the recommendation is the
fastest eligible one at >= 1.2x torch fp32 (``benchmark/backend_choice.py``). ``--record`` stores the
figures and the choice for this machine, which ``features.text_backend: auto`` (the default) then uses.

    PYTHONPATH=. python scripts/bench_text_encoders.py --items 1000 --repeats 3 [--record]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from benchtools import ensure_twin

from benchmark.backend_choice import (
    MIN_MEAN_COSINE,
    RULE,
    TEXT_BACKENDS,
    choose,
    machine_key,
    onnx_runtime_missing,
    record_path,
    write_choice,
)
from benchmark.data.sources import load_dataset
from benchmark.features import _encode_texts, build_prompts, get_text_encoder
from benchmark.machine import machine_info


def twin_prompts(data_dir: Path, scale: str, n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` item prompts of the twin (generated into ``data_dir`` if absent)."""
    ensure_twin(data_dir, scale, 0, progress=False)
    items = load_dataset("xmarket-sim", data_dir, scale=scale, seed=0, progress=False).items
    prompts = build_prompts(items)
    pick = np.random.default_rng(seed).choice(len(prompts), size=min(n, len(prompts)), replace=False)
    return [prompts[i] for i in np.sort(pick)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000, help="prompts to encode per pass (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per backend, interleaved (default 3)")
    ap.add_argument("--batch-size", type=int, default=64, help="as features.batch_size (default 64)")
    ap.add_argument("--data-dir", type=Path, default=Path("data"), help="where the twin is (or is generated)")
    ap.add_argument("--scale", default="small", help="twin preset the prompts come from (default small)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt sample")
    ap.add_argument("--backends", default=",".join(TEXT_BACKENDS), help="comma-separated; torch always runs")
    ap.add_argument("--export-root", type=Path, default=None, help="ONNX export cache (default: the user cache)")
    ap.add_argument("--record", action="store_true",
                    help=f"store the figures and choice for this machine in {record_path()} (features.text_backend=auto)")
    args = ap.parse_args()

    prompts = twin_prompts(args.data_dir, args.scale, args.items, args.seed)
    wanted = ["torch", *[b for b in args.backends.split(",") if b and b != "torch"]]
    missing = onnx_runtime_missing()
    if missing:
        print(f"onnx backends skipped: {missing}")
        wanted = [b for b in wanted if not b.startswith("onnx")]
    info = machine_info()
    print(f"machine: {info['cpu']} ({os.cpu_count()} CPUs, ISA {', '.join(info['isa'])}); torch threads "
          f"{torch.get_num_threads()}; key {machine_key()}")
    print(f"prompts: {len(prompts)} of the xmarket-sim {args.scale} twin, mean {np.mean([len(p) for p in prompts]):.0f} "
          f"chars; batches of {args.batch_size}, length-sorted; {args.repeats} interleaved repeats")

    encoders = {}
    for b in wanted:
        t0 = time.perf_counter()
        enc = get_text_encoder("minilm", backend=b, export_root=args.export_root)
        enc.encode(prompts[:2])  # load the model, export / read back the ONNX file
        encoders[b] = enc
        print(f"  {b}: ready in {time.perf_counter() - t0:.1f} s ({enc.id.split('@')[0]}"
              f"{'+' + enc.id.split('+', 1)[1] if '+' in enc.id else ''})")

    seconds: dict[str, list[float]] = {b: [] for b in wanted}
    vectors: dict[str, np.ndarray] = {}
    load = [os.getloadavg()[0]]
    for r in range(args.repeats):
        for b in wanted if r % 2 == 0 else wanted[::-1]:
            t0 = time.perf_counter()
            vectors[b] = _encode_texts(encoders[b], prompts, args.batch_size, progress=False)
            seconds[b].append(time.perf_counter() - t0)
        load.append(os.getloadavg()[0])

    ref = vectors["torch"]
    base = len(prompts) / float(np.median(seconds["torch"]))
    figures = {}
    print(f"\n{'backend':<12}{'items/s':>9}{'x torch':>9}{'mean cos':>10}{'min cos':>10}  eligible   (1-min load "
          f"{min(load):.1f}-{max(load):.1f})")
    for b in wanted:
        ips = len(prompts) / float(np.median(seconds[b]))
        cos = (vectors[b] * ref).sum(axis=1)
        figures[b] = {"items_per_s": round(ips, 2), "ratio": round(ips / base, 3),
                      "mean_cosine": round(float(cos.mean()), 5), "min_cosine": round(float(cos.min()), 5),
                      "seconds": [round(s, 2) for s in seconds[b]]}
        ok = "yes" if cos.mean() >= MIN_MEAN_COSINE else "no"
        print(f"{b:<12}{ips:>9.1f}{ips / base:>9.2f}{cos.mean():>10.5f}{cos.min():>10.5f}  {ok}")
    choice = choose(figures)
    print(f"\nrecommended for this machine: {choice} ({RULE})")
    if args.record:
        note = f"{len(prompts)} {args.scale}-twin prompts, batch {args.batch_size}, {args.repeats} repeats"
        _, path = write_choice(figures, note)
        print(f"recorded in {path}: features.text_backend=auto now runs {choice} on this machine")
    else:
        print("not recorded (--record stores it for features.text_backend=auto); or set it per run: "
              f"--set features.text_backend={choice}")


if __name__ == "__main__":
    main()
