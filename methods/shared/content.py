"""Content views of an item, shared by CB2CF (docs/methods.md 10.4) and UAE's content tower (11.3).

CB2CF is a *multiview* regression (Barkan et al., RecSys'19): each view has its own component
and the components are concatenated. Here every view is a float matrix with one row per item
(the category view is a sparse multi-hot, stored as CSR to stay small at paper scale).
Continuous inputs are z-scored per dimension over the items that have them [proposal].
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from benchmark.data.model import Items
from benchmark.features.model import ItemFeatures


def standardise(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """z-score each column using the statistics of ``rows`` (all rows if None); float32."""
    ref = x if rows is None else x[rows]
    if len(ref) == 0:
        return np.zeros_like(x, dtype=np.float32)
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    return ((x - mean) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)


def text_view(features: ItemFeatures) -> np.ndarray:
    """The frozen PLM text vectors, standardised: float32 [N, d_text]."""
    if features.text is None:
        raise ValueError("text_view: the features have no text vectors")
    return standardise(np.asarray(features.text, dtype=np.float32))


def image_view(features: ItemFeatures) -> tuple[np.ndarray, bool]:
    """[standardised image vector (zeros where missing); missing flag]: float32 [N, d_image + 1].

    Without image features at all the view is the flag column alone (a constant 1). Returns the
    matrix and whether any item had an image.
    """
    n = len(features.items)
    if features.image is None or features.image_mask is None or not features.image_mask.any():
        return np.ones((n, 1), dtype=np.float32), False
    mask = np.asarray(features.image_mask, dtype=bool)
    img = standardise(np.asarray(features.image, dtype=np.float32), np.flatnonzero(mask))
    img[~mask] = 0.0
    return np.concatenate([img, (~mask)[:, None].astype(np.float32)], axis=1), True


@dataclass(frozen=True)
class MultiHot:
    """A CSR multi-hot matrix: item i has vocabulary ids ``ids[offsets[i]:offsets[i+1]]``."""

    vocab: tuple[str, ...]
    offsets: np.ndarray  # int64 [N+1]
    ids: np.ndarray  # int64 [nnz]

    def rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat ids, per-item bag offsets) of ``items``, the inputs of an EmbeddingBag."""
        lengths = self.offsets[items + 1] - self.offsets[items]
        starts = np.repeat(self.offsets[items] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        flat = self.ids[np.arange(lengths.sum(), dtype=np.int64) + starts]
        return flat, np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)

    def dense(self) -> np.ndarray:
        out = np.zeros((len(self.offsets) - 1, len(self.vocab)), dtype=np.float32)
        owner = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        out[owner, self.ids] = 1.0
        return out


def category_multihot(items: Items, min_freq: int) -> MultiHot | None:
    """Multi-hot over the categories carried by >= ``min_freq`` items; None without categories."""
    if items.categories is None:
        return None
    per_item = [tuple(dict.fromkeys(c)) if c else () for c in items.categories]  # de-dup, keep order
    freq = Counter(c for cats in per_item for c in cats)
    vocab = tuple(sorted(c for c, k in freq.items() if k >= min_freq))
    if not vocab:
        return None
    index = {c: k for k, c in enumerate(vocab)}
    ids = [[index[c] for c in cats if c in index] for cats in per_item]
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    flat = np.fromiter((k for x in ids for k in x), dtype=np.int64, count=int(lengths.sum()))
    return MultiHot(vocab=vocab, offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64), ids=flat)


def numeric_view(items: Items) -> np.ndarray:
    """[log1p(price), has_price, averageRating, rating_missing], standardised: float32 [N, 4].

    Missing price or rating (nan, or no column at all) -> 0 plus its flag (docs/methods.md 10.4).
    """
    n = len(items)
    price = np.full(n, np.nan, dtype=np.float64) if items.price is None else items.price.astype(np.float64)
    rating = np.full(n, np.nan) if items.avg_rating is None else items.avg_rating.astype(np.float64)
    has_price, has_rating = np.isfinite(price), np.isfinite(rating)
    cols = np.stack([
        np.where(has_price, np.log1p(np.clip(np.nan_to_num(price), 0, None)), 0.0),
        has_price.astype(np.float64),
        np.where(has_rating, np.nan_to_num(rating), 0.0),
        (~has_rating).astype(np.float64),
    ], axis=1)
    out = standardise(cols)
    out[~has_price, 0] = 0.0
    out[~has_rating, 2] = 0.0
    return out


def content_input(features: ItemFeatures) -> tuple[np.ndarray, bool]:
    """UAE's content-tower input [text; image; image-missing flag] (docs/methods.md 11.3).

    Without image features it is the text alone. Returns the matrix and whether images were used.
    """
    text = text_view(features)
    image, has_image = image_view(features)
    if not has_image:
        return text, False
    return np.concatenate([text, image], axis=1), True
