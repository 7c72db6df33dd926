"""Prepare what every run of a suite shares: dataset, split manifest, train view, item features.

The real XMarket files are used when present in the data directory. When none are there and no
data directory was given, the suite falls back to the synthetic twin and says so (banner, table
titles, MLflow tags); a given data directory without them, or with some domains missing, is an
error (``--dataset xmarket-sim`` asks for the twin explicitly).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.model import Dataset, Split, TrainView
from benchmark.data.paper_data import OTHER, describe
from benchmark.features.model import ItemFeatures
from benchmark.fsutil import cache_root
from benchmark.plugin import Method

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Inputs:
    dataset: Dataset
    split: Split
    train: TrainView
    features: ItemFeatures
    label: str  # e.g. "xmarket-sim (SYNTHETIC, small)"
    banner: str | None  # shown when the suite fell back to the synthetic twin

    @property
    def synthetic(self) -> bool:
        return self.dataset.synthetic

    @property
    def paper_data(self) -> dict[str, str]:
        """Whether this is the paper's XMarket, its twin or other data (``paper_data.describe``), for records."""
        return self.dataset.meta.get("paper_data") or describe(self.dataset)

    def domain_interactions(self) -> dict[str, int]:
        """Interactions per domain over the whole dataset (the bars of paper Figure 7)."""
        items = self.dataset.items
        counts = np.bincount(items.domain[self.dataset.interactions.item], minlength=len(items.domains))
        return {d: int(c) for d, c in zip(items.domains, counts, strict=True)}

    def available(self) -> frozenset[str]:
        """The inputs this dataset offers, in the vocabulary of Method.requires."""
        have = {"ids", "sequences"} | set(self.features.modalities)
        if np.isfinite(self.train.sequences.rating).any():
            have.add("ratings")
        return frozenset(have)


def dataset_label(dataset: Dataset, scale: str | None) -> str:
    if dataset.meta.get("undated"):
        return f"{dataset.name} (real; undated: interactions ordered by {dataset.meta['undated']})"
    if dataset.synthetic:
        return f"{dataset.name} (SYNTHETIC, {dataset.meta.get('scale', scale)})"
    if dataset.name == "xmarket" and (dataset.meta.get("paper_data") or describe(dataset))["kind"] == OTHER:
        return f"{dataset.name} (real; not the paper's XMarket)"
    return f"{dataset.name} (real)"


def _load(dataset_cfg: dict, data_dir: Path, scale: str, progress: bool,
          twin_fallback: bool = True) -> tuple[Dataset, str | None]:
    """The suite's dataset. Real XMarket with some domain files missing is an error; with none at
    all the twin is used only when ``twin_fallback`` (no data directory was given)."""
    from benchmark.data import sources

    name = dataset_cfg["name"]
    domains = dataset_cfg.get("domains")
    banner = None
    if name == "xmarket" and not sources.real_xmarket_present(data_dir, domains, allow_none=twin_fallback):
        fallback = dataset_cfg.get("fallback", "xmarket-sim")
        banner = (
            f"Real XMarket files not found under {sources.xmarket_root(data_dir)}: running on the SYNTHETIC twin "
            f"'{fallback}' ({scale} preset). Fetch the real data with "
            f"`python -m benchmark data fetch xmarket --data-dir {data_dir}`."
        )
        name = fallback
    dataset = sources.load_dataset(name, data_dir, scale=scale, seed=0, domains=domains, progress=progress,
                                   domain_field=dataset_cfg.get("domain_field"),
                                   time_field=dataset_cfg.get("time_field"))
    return dataset, banner


def features_needed(features_cfg: dict, methods: Iterable[type[Method]]) -> dict:
    """The features config cut to what these methods read, so no encoding is wasted.

    No text encoder when none requires text, no image encoder when none requires or uses images,
    no word-drop view when none uses ``text_word_drop``: at paper scale each text view is 143,370
    MiniLM prompts (~1 CPU-h). Run keys still hash the suite's full features config, and a method
    sees exactly the features it would see beside any other methods.
    """
    read = set().union(*((cls.requires | cls.uses) for cls in methods))
    out = dict(features_cfg)
    if "text" not in read:
        out["text_encoder"] = None
    if "image" not in read:
        out["image_encoder"] = None
    if "text_word_drop" not in read or out["text_encoder"] is None:
        out["word_drop"] = 0.0
    return out


@functools.lru_cache(maxsize=2)
def _prepare_cached(dataset_key: str, split_key: str, features_key: str, data_dir: str, scale: str,
                    progress: bool, twin_fallback: bool = True) -> Inputs:
    import json

    from benchmark.data.split import cached_split, train_view
    from benchmark.features import compute_features
    from benchmark.features.degrade import degrade_features

    dataset_cfg, split_cfg, features_cfg = (json.loads(k) for k in (dataset_key, split_key, features_key))
    root = Path(data_dir)
    dataset, banner = _load(dataset_cfg, root, scale, progress, twin_fallback)
    split = cached_split(
        dataset, cache_root(root) / "splits", seed=split_cfg["seed"],
        test_user_frac=split_cfg["test_user_frac"], overlapped_frac=split_cfg["overlapped_frac"],
        min_interactions=split_cfg["min_interactions"],
    )
    train = train_view(dataset, split)
    if not (features_cfg["text_encoder"] or features_cfg["image_encoder"]):
        features = ItemFeatures(items=dataset.items)  # no planned method reads item content
    elif dataset.items.has_content:
        features = compute_features(
            dataset.items, text_encoder=features_cfg["text_encoder"],
            image_encoder=features_cfg["image_encoder"] if dataset.items.has_images else None,
            cache_dir=cache_root(root) / "features", batch_size=features_cfg["batch_size"], progress=progress,
            word_drop=float(features_cfg.get("word_drop", 0.0)), device=features_cfg.get("device") or "cpu",
            max_tokens=features_cfg.get("max_tokens"), text_backend=features_cfg.get("text_backend"),
            export_root=cache_root(root) / "onnx",
        )
        features = degrade_features(features, features_cfg.get("degrade"))  # the one place (features.degrade)
    else:
        log.warning("%s has no item metadata: content methods will be skipped", dataset.name)
        features = ItemFeatures(items=dataset.items)
    return Inputs(dataset=dataset, split=split, train=train, features=features,
                  label=dataset_label(dataset, scale), banner=banner)


def prepare_inputs(dataset_cfg: dict, split_cfg: dict, features_cfg: dict, data_dir: Path, scale: str,
                   progress: bool = True, twin_fallback: bool = True) -> Inputs:
    """Load (or reuse, within one process) the dataset, split and features a run needs."""
    import json

    def key(d: dict) -> str:
        return json.dumps(d, sort_keys=True)

    return _prepare_cached(key(dataset_cfg), key(split_cfg), key(features_cfg), str(data_dir.resolve()),
                           scale, progress, twin_fallback)
