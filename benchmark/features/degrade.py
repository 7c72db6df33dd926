"""Feature degradation: remove or corrupt frozen item content, identically for every content method.

UniM2Rec (seed 003) claims robustness to missing or noisy item content. To measure that claim
for every method that reads content (not only UniM2Rec), the suite's ``features.degrade`` section
is applied here, once, to the computed :class:`ItemFeatures` before any method sees them:

- ``drop_images``: share of the items that have an image whose image is removed (vector zeroed,
  ``image_mask`` False), chosen with a seeded permutation;
- ``drop_texts``: share of the items whose text vector is removed (zeroed; the word-drop view too).
  ``ItemFeatures`` has no text mask, so a removed text is an all-zero row (as a missing image is);
- ``noise_std``: Gaussian noise added to every remaining vector (text, word-drop text, image), in
  units of that modality's root-mean-square coordinate over its present rows [proposal], so 1.0
  means noise as strong as the signal whatever the encoder's scale;
- ``seed``: the degradation's own seed (the same items are dropped for every method and run seed).

The section is absent by default (no degradation, run keys unchanged); ``benchmark.config``
validates it before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from benchmark.config import DEGRADE_DEFAULTS
from benchmark.features.model import ItemFeatures

log = logging.getLogger(__name__)


def is_identity(degrade: dict[str, Any] | None) -> bool:
    """True when the settings change nothing (absent, or every share and the noise are zero)."""
    if not degrade:
        return True
    return not any(float(degrade.get(k, 0.0)) > 0 for k in ("drop_images", "drop_texts", "noise_std"))


def _drop_rows(have: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of round(share * #have) of the rows where ``have`` is True, seeded."""
    rows = np.flatnonzero(have)
    n = int(round(float(share) * len(rows)))
    return np.sort(rng.permutation(rows)[:n])


def _noisy(x: np.ndarray, present: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x[present], dtype=np.float64)))) if present.any() else 0.0
    out = x.copy()
    noise = rng.standard_normal((int(present.sum()), x.shape[1])).astype(np.float32)
    out[present] += np.float32(std * rms) * noise
    return out


def degrade_features(features: ItemFeatures, degrade: dict[str, Any] | None) -> ItemFeatures:
    """A degraded copy of ``features`` (the input is returned unchanged when nothing is asked)."""
    if is_identity(degrade):
        return features
    cfg = {**DEGRADE_DEFAULTS, **(degrade or {})}
    rng_img, rng_txt, rng_noise = (np.random.default_rng([int(cfg["seed"]), 0xDE6, k]) for k in range(3))
    n = len(features.items)
    text = None if features.text is None else np.array(features.text, dtype=np.float32, copy=True)
    word = None if features.text_word_drop is None else np.array(features.text_word_drop, dtype=np.float32, copy=True)
    image = None if features.image is None else np.array(features.image, dtype=np.float32, copy=True)
    mask = None if features.image_mask is None else np.array(features.image_mask, dtype=bool, copy=True)
    notes = []
    if image is not None and mask is not None and float(cfg["drop_images"]) > 0:
        rows = _drop_rows(mask, float(cfg["drop_images"]), rng_img)
        image[rows], mask[rows] = 0.0, False
        notes.append(f"{len(rows)} images removed")
    text_present = np.ones(n, dtype=bool)
    if text is not None:
        text_present = np.abs(text).sum(axis=1) > 0
        if float(cfg["drop_texts"]) > 0:
            rows = _drop_rows(text_present, float(cfg["drop_texts"]), rng_txt)
            text[rows] = 0.0
            if word is not None:
                word[rows] = 0.0
            text_present[rows] = False
            notes.append(f"{len(rows)} texts removed")
    std = float(cfg["noise_std"])
    if std > 0:
        if text is not None:
            text = _noisy(text, text_present, std, rng_noise)
        if word is not None:
            word = _noisy(word, text_present, std, rng_noise)
        if image is not None and mask is not None:
            image = _noisy(image, mask, std, rng_noise)
        notes.append(f"Gaussian noise {std} x RMS on the remaining vectors")
    log.warning("features degraded (features.degrade %s): %s", cfg, "; ".join(notes) or "nothing to change")
    return dataclasses.replace(features, text=text, text_word_drop=word, image=image, image_mask=mask)
