"""Throughput of UniEmbedding training, reference kernels vs ours, beside RecBole's SASRec (prints figures; not a test).

    PYTHONPATH=. python scripts/bench_uniembedding.py --users 12000 --items 8000 --epochs 2 --batch-size 512

Builds a synthetic TrainView (3 domains, Zipf item popularity, users spanning one, two or three
domains ~66/30/4 %, mean sequence length ~--mean-len) and random text/image features, then, for
each method, fits it ``--repeats`` times with the reference kernels (``reference_path``: the
chunk-by-chunk encoder and Eqn 3, positives as row products, the code before issue 25) and with
ours, interleaved in this one process so both see the same machine load (after one untimed
warm-up fit of each on 600 users). A sample is an anchor
of Eqn 4 (one term of the loss; ``stats['training']['examples_seen']``).

Printed per fit: anchors/s over the training epochs (wall), anchors per CPU-second of the whole
fit (validation included; steadier than wall on a shared machine), and the largest difference
between the two paths' embeddings (same seed; ours reorders float sums, so allclose, not equal).
Then RecBole 1.2.1's SASRec at the full model's sizes (hidden = dim, layers, heads, max_len,
batch, inner = encoder_ffn, dropout = encoder_dropout) on the same sequences and threads: one
timed epoch, samples = RecBole's history -> next item prefixes (``benchtools.recbole_sasrec_timed``).
``--profile`` prints torch.profiler's top operators of one fit of ours instead.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from benchtools import recbole_sasrec_timed

from benchmark.data.model import Items, Sequences, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.uniembedding import (
    UniEmbedding,
    UniEmbeddingText,
    UniEmbeddingWithoutCrossDomain,
    UniEmbeddingWithoutUserView,
)

CLASSES = {"full": UniEmbedding, "text": UniEmbeddingText, "wo-user-view": UniEmbeddingWithoutUserView,
           "wo-cross-domain": UniEmbeddingWithoutCrossDomain}


def synthetic_view(n_users: int, n_items: int, mean_len: float, seed: int = 0) -> TrainView:
    """Random mixed-domain sequences with Zipf popularity inside each domain (vectorised)."""
    rng = np.random.default_rng(seed)
    domain = rng.choice(3, size=n_items, p=[0.5, 0.3, 0.2]).astype(np.int16)
    lengths = 1 + rng.geometric(1.0 / max(mean_len - 1.0, 1.0), size=n_users)
    lengths = np.minimum(lengths, 200).astype(np.int64)
    n_dom = rng.choice([1, 2, 3], size=n_users, p=[0.66, 0.30, 0.04])
    user_domains = np.argsort(rng.random((n_users, 3)), axis=1)  # a random order of the 3 domains
    owner = np.repeat(np.arange(n_users), lengths)
    slot = rng.integers(0, n_dom[owner])
    tok_domain = user_domains[owner, slot]
    items = np.empty(len(owner), dtype=np.int32)
    for j in range(3):  # loop over the 3 domains, not over interactions
        pool = np.flatnonzero(domain == j)
        weight = 1.0 / np.arange(1, len(pool) + 1)
        picks = tok_domain == j
        items[picks] = rng.choice(pool, size=int(picks.sum()), p=weight / weight.sum())
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    seqs = Sequences(users=np.arange(n_users, dtype=np.int32), offsets=offsets, items=items,
                     day=np.zeros(len(items), np.int32), rating=np.full(len(items), np.nan, np.float32))
    item_table = Items(domains=("Books", "Electronics", "Cell_Phones"),
                       source_id=np.array([f"i{i}" for i in range(n_items)], dtype=object), domain=domain)
    return TrainView(sequences=seqs, items=item_table,
                     item_train_count=np.bincount(items, minlength=n_items).astype(np.int64))


def random_features(view: TrainView, d_text: int, d_image: int, seed: int = 0) -> ItemFeatures:
    rng = np.random.default_rng(seed)
    n = view.n_items
    return ItemFeatures(items=view.items, text=rng.normal(size=(n, d_text)).astype(np.float32),
                        image=rng.random(size=(n, d_image)).astype(np.float32),
                        image_mask=rng.random(n) < 0.85, text_encoder="random", image_encoder="random")


def timed_fit(cls: type[UniEmbedding], view: TrainView, features: ItemFeatures, cfg: dict,
              reference: bool) -> dict:
    """One fit: anchors, training-epoch wall seconds, whole-fit wall and CPU seconds, the embeddings."""
    logged: dict[str, list[float]] = {}

    def log(name: str, value: float, step: int | None = None) -> None:
        logged.setdefault(name, []).append(float(value))

    method = cls()
    method.reference_path = reference
    started, cpu_started = time.perf_counter(), time.process_time()
    method.fit(view, features, cfg, RunContext(seed=0, log_metric=log))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"anchors": int(method.stats["training"]["examples_seen"]), "wall": wall, "cpu": cpu,
            "epoch_s": logged.get("uniembedding_epoch_seconds", []), "loss": logged.get("uniembedding_loss", []),
            "emb": method.item_embeddings()}


def profile_fit(cls: type[UniEmbedding], view: TrainView, features: ItemFeatures, cfg: dict, rows: int) -> None:
    """torch.profiler's operators of one fit with our kernels, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    method = cls()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        method.fit(view, features, cfg, RunContext(seed=0))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12000)
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--mean-len", type=float, default=6.1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512, help="users per batch (the small preset's 512)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--d-text", type=int, default=384)
    parser.add_argument("--d-image", type=int, default=228, help="the twin's offline image descriptor is 228-d")
    parser.add_argument("--threads", type=int, default=1, help="the config's torch_threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="fits per path, reference and ours interleaved")
    parser.add_argument("--methods", default="full,text")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="print the top ROWS operators of one fit of ours per method, nothing else")
    args = parser.parse_args()

    view = synthetic_view(args.users, args.items, args.mean_len)
    features = random_features(view, args.d_text, args.d_image)
    threads = args.threads or torch.get_num_threads()
    print(f"data: {len(view.sequences)} users, {view.n_items} items, {len(view.sequences.items)} interactions, "
          f"mean length {view.sequences.lengths.mean():.2f}; torch threads {threads}; batch {args.batch_size} "
          f"users, d {args.dim}, {args.epochs} epochs (validation every epoch); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    for key in args.methods.split(","):
        cls = CLASSES[key]
        cfg = {**cls.default_config(), "epochs": args.epochs, "batch_size": args.batch_size, "dim": args.dim,
               "torch_threads": args.threads or None}
        if args.profile:
            profile_fit(cls, view, features, cfg, args.profile)
            continue
        warm = synthetic_view(min(args.users, 600), args.items, args.mean_len, seed=1)
        for reference in (True, False):  # untimed: the first fit in a process pays one-off imports and allocations
            timed_fit(cls, warm, random_features(warm, args.d_text, args.d_image), {**cfg, "epochs": 1}, reference)
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.repeats):
            for reference in (True, False):
                run = timed_fit(cls, view, features, cfg, reference)
                runs[reference].append(run)
                print(f"{cls.name:28s} {'reference' if reference else 'ours     '} {run['anchors']:8d} anchors  "
                      f"{run['anchors'] / sum(run['epoch_s']):7.0f} anchors/s (epochs: "
                      f"{' '.join(f'{s:.1f}' for s in run['epoch_s'])} s)  fit {run['wall']:6.1f} s wall "
                      f"{run['cpu']:6.1f} s CPU = {run['anchors'] / run['cpu']:6.0f} anchors/CPU-s  "
                      f"loss {run['loss'][0]:.3f} -> {run['loss'][-1]:.3f}", flush=True)
        rate = {ref: float(np.median([r["anchors"] / sum(r["epoch_s"]) for r in rs])) for ref, rs in runs.items()}
        cpu_rate = {ref: float(np.median([r["anchors"] / r["cpu"] for r in rs])) for ref, rs in runs.items()}
        diff = float(np.abs(runs[True][0]["emb"] - runs[False][0]["emb"]).max())
        print(f"{cls.name:28s} ours / reference: {rate[False] / rate[True]:.2f}x anchors/s (wall, medians), "
              f"{cpu_rate[False] / cpu_rate[True]:.2f}x anchors per CPU-s; embeddings max |diff| {diff:.1e}",
              flush=True)
    if args.skip_recbole or args.profile:
        return
    cfg = UniEmbedding.default_config()
    timed = recbole_sasrec_timed(view.sequences, hidden=args.dim, layers=int(cfg["encoder_layers"]),
                                 heads=int(cfg["encoder_heads"]), max_len=int(cfg["max_len"]), batch=args.batch_size,
                                 threads=threads, inner=int(cfg["encoder_ffn"]), dropout=float(cfg["encoder_dropout"]))
    print(f"RecBole 1.2.1 SASRec (hidden {args.dim}, {cfg['encoder_layers']} layers, {cfg['encoder_heads']} heads, "
          f"inner {cfg['encoder_ffn']}, max_len {cfg['max_len']}, batch {args.batch_size}, CE): {timed.samples} "
          f"samples in {timed.seconds:.1f} s wall, {timed.cpu_s:.1f} s CPU = {timed.per_s:.0f} samples/s, "
          f"{timed.per_cpu_s:.0f} per CPU-s (one epoch)", flush=True)


if __name__ == "__main__":
    main()
