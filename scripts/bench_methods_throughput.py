"""Training throughput of the ID/content baselines (PGG, CB2CF, UAE, Item2Vec) at a suite scale.

Usage:
    PYTHONPATH=. python scripts/bench_methods_throughput.py --scale small --methods pgg,cb2cf,uae,item2vec

Trains each method for a fixed small number of epochs and prints wall time and training
examples per second (per method: the unit it iterates over). Data: the real synthetic twin when
``benchmark.data.sources.load_dataset`` and ``benchmark.data.split`` are importable, otherwise a
self-made theme-structured TrainView with random text/image features of the preset's size
(``--synthetic`` forces it).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.model import Items, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext

SCALES = {  # users, items, mean sequence length, text dim, image dim (suite presets, twin.md)
    "tiny": dict(users=2_000, items=600, mean_len=5.5, text_dim=384, image_dim=256),
    "small": dict(users=40_000, items=8_000, mean_len=5.5, text_dim=384, image_dim=256),
}

# The epochs each method runs here: enough to time a steady state, small enough to be quick.
BENCH_EPOCHS: dict[str, dict[str, Any]] = {
    "pgg": {"confidence": {"epochs": 1}, "graph": {"epochs": 2}},
    "cb2cf": {"item2vec": {"epochs": 2}, "epochs": 5},
    "uae": {"user_mf": {"epochs": 1}, "epochs": 1},
    "item2vec": {"epochs": 2},
}


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def synthetic_data(scale: str, seed: int = 0) -> tuple[TrainView, ItemFeatures]:
    """A theme-structured TrainView + features: items in themes, users drifting within 1-3 themes.

    Not the twin (twin.md): just enough structure for the methods to do their real work.
    """
    p = SCALES[scale]
    rng = np.random.default_rng(seed)
    n_items, n_users, n_themes = p["items"], p["users"], 60
    theme = rng.integers(0, n_themes, n_items)
    domain = rng.choice(3, n_items, p=[0.6, 0.25, 0.15]).astype(np.int16)
    pop = rng.pareto(1.2, n_items) + 1.0
    by_theme = [np.flatnonzero(theme == t) for t in range(n_themes)]
    theme_p = [pop[ix] / pop[ix].sum() for ix in by_theme]

    lengths = np.clip(rng.geometric(1.0 / (p["mean_len"] - 1), n_users) + 1, 2, 200)
    user_themes = rng.integers(0, n_themes, (n_users, 3))
    which = rng.integers(0, 3, lengths.sum()) * (rng.random(lengths.sum()) < 0.3)
    owner = np.repeat(np.arange(n_users), lengths)
    seq_theme = user_themes[owner, which]
    items = np.empty(lengths.sum(), dtype=np.int32)
    for t in range(n_themes):  # per theme, not per interaction
        at = np.flatnonzero(seq_theme == t)
        items[at] = rng.choice(by_theme[t], size=len(at), p=theme_p[t])
    noise = rng.random(len(items)) < 0.05
    items[noise] = rng.integers(0, n_items, noise.sum())
    rating = np.where(noise, rng.integers(1, 3, len(items)), rng.integers(4, 6, len(items))).astype(np.float32)
    offsets = np.r_[0, np.cumsum(lengths)]

    words = np.array([f"w{t}" for t in range(n_themes)], dtype=object)
    item_table = Items(
        domains=("Books", "Electronics", "Cell_Phones_and_Accessories"),
        source_id=np.array([f"S{i:07d}" for i in range(n_items)], dtype=object),
        domain=domain,
        title=np.array([f"{words[t]} item {i}" for i, t in enumerate(theme)], dtype=object),
        categories=_object_array([("Root", f"theme{t}") for t in theme]),
        price=np.where(rng.random(n_items) < 0.7, rng.lognormal(3, 1, n_items), np.nan).astype(np.float32),
        avg_rating=np.where(rng.random(n_items) < 0.8, rng.uniform(1, 5, n_items), np.nan).astype(np.float32),
    )
    seqs = [items[offsets[k] : offsets[k + 1]].tolist() for k in range(n_users)]
    ratings = [rating[offsets[k] : offsets[k + 1]].tolist() for k in range(n_users)]
    train = TrainView.from_sequences(seqs, domain, domains=item_table.domains, ratings=ratings, items=item_table)

    text_centre = rng.normal(size=(n_themes, p["text_dim"]))
    text = text_centre[theme] + 1.5 * rng.normal(size=(n_items, p["text_dim"]))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    image_centre = rng.normal(size=(n_themes, p["image_dim"]))
    mask = rng.random(n_items) < 0.7
    image = (image_centre[theme] + 2.0 * rng.normal(size=(n_items, p["image_dim"]))) * mask[:, None]
    features = ItemFeatures(items=item_table, text=text.astype(np.float32), image=image.astype(np.float32),
                            image_mask=mask, text_encoder="random", image_encoder="random")
    return train, features


def twin_data(scale: str, data_dir: Path, seed: int = 0) -> tuple[TrainView, ItemFeatures] | None:
    """The synthetic twin (xmarket-sim), its split and features, as the runner builds them (None if absent).

    Uses the runner's cache layout under ``data_dir`` (``.cache/splits``, ``.cache/features``).
    """
    try:
        from benchmark.data.sources import load_dataset
        from benchmark.data.split import cached_split, train_view
        from benchmark.features import compute_features
    except ImportError:
        return None
    dataset = load_dataset("xmarket-sim", data_dir, scale=scale, seed=seed, progress=False)
    split = cached_split(dataset, data_dir / ".cache" / "splits", seed=seed)
    features = compute_features(dataset.items, cache_dir=data_dir / ".cache" / "features", progress=False,
                                image_encoder="offline-descriptor" if dataset.items.has_images else None)
    return train_view(dataset, split), features


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) else value
    return out


def load_method(name: str) -> type[Method]:
    if name == "pgg":
        from methods.pgg import PGG as cls
    elif name == "cb2cf":
        from methods.cb2cf import CB2CF as cls
    elif name == "uae":
        from methods.uae import UAE as cls
    elif name == "item2vec":
        from methods.item2vec import Item2Vec as cls
    else:
        raise SystemExit(f"unknown method {name!r}")
    return cls


def main_loop(name: str, method: Method, train: TrainView, fit_seconds: float,
              cfg: dict[str, Any]) -> tuple[float, float, str]:
    """(examples processed by the main training loop, its seconds, the unit)."""
    stats = getattr(method, "stats", None)
    if stats is not None:
        n = float(stats["examples_per_epoch"]) * float(stats["epochs"])
        return n, float(stats["seconds_train"]), str(stats.get("unit", "examples"))
    return float(len(train.sequences.items)) * int(cfg["epochs"]), fit_seconds, "interactions"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument("--methods", default="pgg,cb2cf,uae,item2vec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="RunContext.workers (torch threads for the MLPs)")
    parser.add_argument("--full", action="store_true", help="train with the unchanged default configs (full epochs)")
    parser.add_argument("--synthetic", action="store_true", help="use the self-made data even if the twin loads")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UIE_DATA_DIR", "data")),
                        help="where the twin lives / is generated (default: $UIE_DATA_DIR or ./data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    t0 = time.perf_counter()
    data = None if args.synthetic else twin_data(args.scale, args.data_dir, args.seed)
    source = "twin (xmarket-sim, synthetic)"
    if data is None:
        data, source = synthetic_data(args.scale, args.seed), "self-made synthetic"
    train, features = data
    print(f"data: {source} '{args.scale}': {len(train.sequences)} users, {train.n_items} items, "
          f"{len(train.sequences.items)} interactions ({time.perf_counter() - t0:.1f}s to build)")

    rows = []
    for name in args.methods.split(","):
        cls = load_method(name)
        epochs = {} if args.full else BENCH_EPOCHS[name]
        cfg = _merge(cls.default_config(), epochs)
        ctx = RunContext(seed=args.seed, scale=args.scale, workers=args.workers,
                         logger=logging.getLogger(f"bench.{name}"))
        method = cls()
        t = time.perf_counter()
        method.fit(train, features, cfg, ctx)
        seconds = time.perf_counter() - t
        emb = method.item_embeddings()
        assert emb.shape[0] == train.n_items and np.isfinite(emb).all()
        n, loop_seconds, unit = main_loop(name, method, train, seconds, cfg)
        extra = {k: round(v, 1) for k, v in getattr(method, "stats", {}).items() if k.startswith("seconds_")}
        rows.append((name, seconds, loop_seconds, n / max(loop_seconds, 1e-9), unit, epochs or "defaults", extra))
    print(f"\n{'method':<10} {'fit s':>8} {'loop s':>8} {'examples/s':>12}  unit; epochs run; phase seconds")
    for name, seconds, loop_seconds, rate, unit, epochs, extra in rows:
        print(f"{name:<10} {seconds:8.1f} {loop_seconds:8.1f} {rate:12,.0f}  {unit}; {epochs}; {extra}")


if __name__ == "__main__":
    main()
