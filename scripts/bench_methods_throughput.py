"""Training throughput of the ID/content baselines (PGG, CB2CF, UAE, Item2Vec) at a suite scale.

Usage:
    PYTHONPATH=. python scripts/bench_methods_throughput.py --scale small --methods pgg,cb2cf,uae,item2vec

Trains each method for a fixed small number of epochs and prints wall time and training
examples per second (per method: the unit it iterates over). With ``item2vec`` it also prints
gensim's own words/s inside our fit (its epoch log lines) next to gensim on the same item sets
at word2vec's defaults and on a text-like corpus (long sentences, window 5, 5 negatives, 2
workers: the setting of the ~480k words/s in shared/spec/environment.md), with SGNS updates per
second -- (centre, context) pairs x (1 + negatives) -- the unit that is comparable across them. Data: the real synthetic twin when
``benchmark.data.sources.load_dataset`` and ``benchmark.data.split`` are importable, otherwise a
self-made theme-structured TrainView with random text/image features of the preset's size
(``--synthetic`` forces it).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import Word2Vec

from benchmark.data.model import Items, TrainView
from benchmark.data.validation import carve_validation
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.item2vec import Item2Vec
from methods.item2vec.model import item_sets

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
    stats = getattr(method, "stats", None) or {}
    if "examples_per_epoch" in stats:
        n = float(stats["examples_per_epoch"]) * float(stats["epochs"])
        return n, float(stats["seconds_train"]), str(stats.get("unit", "examples"))
    if "training" in stats:  # a TrainingBudget (benchmark-wide): examples seen over the whole fit
        return (float(stats["training"]["examples_seen"]), float(stats.get("seconds_train", fit_seconds)),
                str(stats.get("unit", "examples")))
    return float(len(train.sequences.items)) * int(cfg["epochs"]), fit_seconds, "interactions"


def sgns_pairs(lengths: np.ndarray, window: int, shrink: bool) -> float:
    """(centre, context) pairs skip-gram trains on sentences of these lengths (before sub-sampling).

    Without ``shrink`` a centre sees every word within ``window``; with it (word2vec's default) each
    centre draws its window from 1..``window`` uniformly: the expectation over that draw.
    """
    lengths = np.asarray(lengths, dtype=np.float64)

    def fixed(w: int) -> float:  # sum over d = 1..w of 2 (L - d), for d < L
        d = np.arange(1, w + 1, dtype=np.float64)[None, :]
        return float((2 * np.clip(lengths[:, None] - d, 0, None)).sum())

    return float(np.mean([fixed(w) for w in range(1, window + 1)])) if shrink else fixed(window)


@dataclass(frozen=True)
class GensimRate:
    label: str
    words: float  # effective (trained) words
    pairs: float
    negative: int
    seconds: float
    cpu_s: float

    @property
    def updates(self) -> float:
        return self.pairs * (1 + self.negative)

    def line(self) -> str:
        return (f"{self.label:<62} {self.words / self.seconds:>10,.0f} {self.updates / self.seconds / 1e6:>9.2f}M "
                f"{self.updates / max(self.cpu_s, 1e-9) / 1e6:>9.2f}M {self.pairs / max(self.words, 1):>9.1f} "
                f"{self.updates / max(self.words, 1):>9.1f}")


def gensim_rate(label: str, sentences: list[list[str]], window: int, negative: int, shrink: bool, workers: int,
                sample: float = 1e-3, compute_loss: bool = False, dim: int = 128) -> GensimRate:
    """One timed gensim skip-gram epoch (vocabulary built outside the timing)."""
    model = Word2Vec(vector_size=dim, sg=1, hs=0, negative=negative, window=window, shrink_windows=shrink,
                     sample=sample, min_count=1, workers=workers, seed=0)
    model.build_vocab(sentences)
    t0, c0 = time.perf_counter(), time.process_time()
    trained, raw = model.train(sentences, total_examples=len(sentences), epochs=1, compute_loss=compute_loss)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    # sub-sampling keeps this share of the words: a whole-set window loses about its square of the
    # pairs (both ends of a pair must survive), a shrinking window over long sentences about its share
    kept = trained / max(raw, 1)
    pairs = sgns_pairs(np.array([len(x) for x in sentences]), window, shrink) * (kept if shrink else kept * kept)
    return GensimRate(label, trained, pairs, negative, seconds, cpu_s)


def text_like_corpus(n_words: int = 1_000_000, vocab: int = 70_000, sentence: int = 1_000,
                     seed: int = 0) -> list[list[str]]:
    """Zipf-distributed words in long sentences (text8's shape: ~71k words, 1,000-word chunks)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    words = rng.choice(vocab, size=n_words, p=p / p.sum()).astype(str)
    return [words[s : s + sentence].tolist() for s in range(0, n_words, sentence)]


class _EpochLog(logging.Handler):
    """Collects gensim's per-epoch 'N effective words/s' lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.rates: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"^EPOCH .* ([0-9.]+) effective words/s", record.getMessage())
        if found:
            self.rates.append(float(found.group(1)))


def item2vec_gensim(train: TrainView, cfg: dict[str, Any], seed: int) -> str:
    """gensim's words/s inside our Item2Vec fit next to gensim at word2vec's defaults (see module doc)."""
    handler = _EpochLog()
    gensim_log = logging.getLogger("gensim")
    gensim_log.addHandler(handler)
    level, propagate = gensim_log.level, gensim_log.propagate
    gensim_log.setLevel(logging.INFO)
    gensim_log.propagate = False  # captured, not printed
    try:
        Item2Vec().fit(train, None, cfg, RunContext(seed=seed, logger=logging.getLogger("bench.item2vec")))
    finally:
        gensim_log.removeHandler(handler)
        gensim_log.setLevel(level)
        gensim_log.propagate = propagate
    carve = carve_validation(train, float(cfg["valid_fraction"]), seed, int(cfg["valid_max_cases"]))
    sets = item_sets(carve.fit.sequences, int(cfg["max_set_len"]))  # what the fit trains on ("mixed" sets)
    window, negative, workers = int(cfg["max_set_len"]), int(cfg["negative"]), int(cfg["workers"])
    rows = [
        gensim_rate(f"our item sets: window {window} (whole set), {negative} neg, {workers} worker, loss (the fit)",
                    sets, window, negative, False, workers, float(cfg["sample"]), compute_loss=True),
        gensim_rate("our item sets, the same without the loss", sets, window, negative, False, workers,
                    float(cfg["sample"])),
        gensim_rate("our item sets: window 5 (shrinking), 5 neg, 2 workers", sets, 5, 5, True, 2, float(cfg["sample"])),
        gensim_rate("text-like corpus (1M words): window 5 (shrinking), 5 neg, 2 workers", text_like_corpus(),
                    5, 5, True, 2, sample=0.0),
    ]
    fit_rates = ", ".join(f"{r:,.0f}" for r in handler.rates) or "(gensim logged none)"
    return "\n".join([
        f"\nitem2vec inside our fit: gensim's effective words/s per epoch: {fit_rates}",
        f"{'gensim skip-gram, one epoch (sets: ' + str(len(sets)) + ')':<62} {'words/s':>10} {'updates/s':>10} "
        f"{'per CPU-s':>10} {'pairs/wd':>9} {'upd/word':>9}",
        *[r.line() for r in rows]])


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
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its per-sentence progress lines drown the table

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
    if "item2vec" in args.methods.split(","):
        cls = load_method("item2vec")
        print(item2vec_gensim(train, _merge(cls.default_config(), BENCH_EPOCHS["item2vec"]), args.seed))


if __name__ == "__main__":
    main()
