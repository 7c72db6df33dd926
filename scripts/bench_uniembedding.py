"""Throughput of UniEmbedding training on random data of a given size (prints figures; not a test).

    PYTHONPATH=. python scripts/bench_uniembedding.py --users 36000 --items 8000 --epochs 1

Builds a synthetic TrainView (3 domains, Zipf item popularity, users spanning one, two or three
domains ~66/30/4 %, mean sequence length ~--mean-len) and random text/image features, then
trains the full model and the two ablations and prints seconds per epoch and anchors per second.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmark.data.model import Items, Sequences, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.uniembedding import UniEmbedding, UniEmbeddingWithoutCrossDomain, UniEmbeddingWithoutUserView
from methods.uniembedding.model import training_sequences


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=36000)
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--mean-len", type=float, default=6.1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--d-text", type=int, default=384)
    parser.add_argument("--d-image", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="the config's torch_threads (0 = torch's default)")
    parser.add_argument("--methods", default="full,wo-user-view,wo-cross-domain")
    args = parser.parse_args()

    view = synthetic_view(args.users, args.items, args.mean_len)
    features = random_features(view, args.d_text, args.d_image)
    print(f"data: {len(view.sequences)} users, {view.n_items} items, {len(view.sequences.items)} "
          f"interactions, mean length {view.sequences.lengths.mean():.2f}; torch threads "
          f"{args.threads or torch.get_num_threads()}; batch {args.batch_size} users, d {args.dim}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    classes = {"full": UniEmbedding, "wo-user-view": UniEmbeddingWithoutUserView,
               "wo-cross-domain": UniEmbeddingWithoutCrossDomain}
    for key in args.methods.split(","):
        cls = classes[key]
        cfg = {**cls.default_config(), "epochs": args.epochs, "batch_size": args.batch_size, "dim": args.dim,
               "torch_threads": args.threads or None}
        anchors = training_sequences(view, cfg).n_tokens
        seconds: list[float] = []
        losses: list[float] = []

        def log(name: str, value: float, step: int | None = None, seconds=seconds, losses=losses) -> None:
            (seconds if name.endswith("epoch_seconds") else losses).append(value)

        started, cpu_started = time.perf_counter(), time.process_time()
        method = cls()
        method.fit(view, features, cfg, RunContext(seed=0, log_metric=log))
        method.item_embeddings()
        total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        per_epoch = float(np.mean(seconds))
        print(f"{cls.name:30s} {anchors:8d} anchors/epoch  {per_epoch:7.1f} s/epoch "
              f"(each: {' '.join(f'{s:.1f}' for s in seconds)})  {anchors / per_epoch:8.0f} anchors/s  "
              f"fit {total:7.1f} s wall, {cpu:7.1f} s CPU  loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)


if __name__ == "__main__":
    main()
