"""Item content features: prompt builder, text and image encoders, on-disk cache.

:func:`compute_features` is the pipeline stage ``Items -> ItemFeatures``: one prompt per item (UniEmbedding 4.3), a text encoder and an image encoder by
name, each result cached under (encoder id, weights hash, items fingerprint).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmark.data.model import Items
from benchmark.errors import BenchmarkError, MissingRequirementError
from benchmark.features.cache import FeatureCache, cache_key, fingerprint_images, fingerprint_texts
from benchmark.features.model import ItemFeatures
from benchmark.features.prompt import build_prompts, clean_text, item_prompt
from benchmark.features.registry import (
    ImageEncoder,
    TextEncoder,
    get_image_encoder,
    get_text_encoder,
    list_encoders,
)

__all__ = [
    "ImageEncoder",
    "ItemFeatures",
    "TextEncoder",
    "build_prompts",
    "clean_text",
    "compute_features",
    "get_image_encoder",
    "get_text_encoder",
    "item_prompt",
    "list_encoders",
]

log = logging.getLogger(__name__)


def _check(vectors: np.ndarray, n: int, enc) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (n, enc.dim) or not np.isfinite(vectors).all():
        raise BenchmarkError(
            f"encoder {enc.id!r} returned {vectors.shape} (finite={np.isfinite(vectors).all()}), expected ({n}, {enc.dim})"
        )
    return vectors


def _encode_texts(enc: TextEncoder, prompts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    """Encode in length-sorted batches (less padding), results back in item order."""
    n = len(prompts)
    out = np.zeros((n, enc.dim), dtype=np.float32)
    order = np.argsort(np.fromiter((len(p) for p in prompts), dtype=np.int64, count=n), kind="stable")
    with tqdm(total=n, unit="item", desc=f"text {enc.id.split('@')[0]}", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            out[idx] = _check(enc.encode([prompts[i] for i in idx]), len(idx), enc)
            bar.update(len(idx))
    return out


def _encode_images(
    enc: ImageEncoder, paths: list[str], batch_size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    n = len(paths)
    out = np.zeros((n, enc.dim), dtype=np.float32)
    mask = np.zeros(n, dtype=bool)
    todo = np.flatnonzero(np.fromiter((bool(p) for p in paths), dtype=bool, count=n))
    with tqdm(total=len(todo), unit="img", desc=f"image {enc.id.split('@')[0]}", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            vecs, ok = enc.encode_with_mask([paths[i] for i in idx])
            out[idx] = _check(vecs, len(idx), enc)
            mask[idx] = ok
            bar.update(len(idx))
    bad = len(todo) - int(mask.sum())
    if bad:
        log.warning(
            "%d of %d item images could not be read; those items are marked as having no image",
            bad,
            len(todo),
        )
    return out, mask


def _cached(cache, modality, enc, fingerprint, n, with_mask, compute, device="cpu"):
    """Load (vectors, mask) from the cache or compute and store them; the model loads only on a miss.

    Vectors encoded on a GPU may differ from CPU ones in the last bits: they are cached apart.
    """
    where = "" if str(device) == "cpu" else f"#{str(device).split(':')[0]}"
    key = cache_key(modality, enc.id + where, enc.weights_hash, fingerprint)
    if cache is not None:
        hit = cache.load(modality, key, n, enc.dim, with_mask)
        if hit is not None:
            log.info("%s features of %d items from the cache (%s)", modality, n, enc.id)
            return hit
    vectors, mask = compute()
    if cache is not None:
        meta = {"encoder_id": enc.id, "weights_hash": enc.weights_hash, "fingerprint": fingerprint}
        try:
            cache.save(modality, key, vectors, mask, meta)
        except OSError as exc:  # a read-only data dir: use the features, keep no cache
            log.warning("cannot write the feature cache under %s (%s); continuing without it", cache.root,
                        exc.strerror or exc)
    return vectors, mask


def word_drop_prompts(prompts: list[str], ratio: float, seed: int = 0) -> list[str]:
    """UniSRec's word-drop augmentation (``feat2CLS``): keep each space-separated word w.p. 1 - ratio.

    As the authors' ``generate_text_embedding(word_drop_ratio=...)``, once per item, seeded.
    """
    rng = np.random.default_rng([int(seed), 0xD209])
    out = []
    for prompt in prompts:
        words = prompt.split(" ")
        keep = rng.random(len(words)) > ratio
        out.append(" ".join(w for w, k in zip(words, keep, strict=True) if k))
    return out


def compute_features(
    items: Items,
    text_encoder: str | TextEncoder | None = "minilm",
    image_encoder: str | ImageEncoder | None = "offline-descriptor",
    cache_dir: Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    word_drop: float = 0.0,
    device: str = "cpu",
    max_tokens: int | None = None,
    text_backend: str | None = None,
    export_root: Path | None = None,
) -> ItemFeatures:
    """Frozen text and image vectors for every item (docs/protocol.md 1.4 step 7; UniEmbedding 4.3).

    Encoders may be given by name (see :func:`list_encoders`) or as objects. Items without a
    (readable) image get a zero row and ``image_mask`` False; with no image at all, or no image
    encoder, ``image`` is None. Text and image share a space (``joint_space``) only when both
    come from the same CLIP model. ``word_drop`` > 0 also encodes the word-drop text view
    (``ItemFeatures.text_word_drop``), cached like any feature. ``device``: where encoders given by
    name run their torch models (``features.device``; checked before any work by the runner);
    ``max_tokens`` their prompt truncation (``features.max_tokens``, part of the encoder id);
    ``text_backend`` how ``minilm`` runs (``features.text_backend``: torch, torch-bf16, onnx,
    onnx-int8; part of the encoder id unless torch), its ONNX exports cached under ``export_root``.
    """
    if not 0.0 <= float(word_drop) < 1.0:
        raise BenchmarkError(f"features.word_drop must be in [0, 1), got {word_drop!r}")
    n = len(items)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    text = image = mask = dropped = None
    text_id = image_id = None

    if text_encoder is not None:
        if not items.has_content:
            name = text_encoder if isinstance(text_encoder, str) else text_encoder.id
            raise MissingRequirementError(
                f"dataset has no item text/metadata: text encoder {name!r} needs item titles"
            )
        enc = (get_text_encoder(text_encoder, device, max_tokens, text_backend, export_root)
               if isinstance(text_encoder, str) else text_encoder)
        prompts = build_prompts(items)
        text, _ = _cached(
            cache,
            "text",
            enc,
            fingerprint_texts(prompts),
            n,
            False,
            lambda: (_encode_texts(enc, prompts, batch_size, progress), None),
            device,
        )
        text_id = enc.id
        if word_drop > 0:
            aug = word_drop_prompts(prompts, float(word_drop))
            dropped, _ = _cached(
                cache, "text", enc, fingerprint_texts(aug), n, False,
                lambda: (_encode_texts(enc, aug, batch_size, progress), None), device,
            )

    if image_encoder is not None and items.has_images:
        enc = get_image_encoder(image_encoder, device) if isinstance(image_encoder, str) else image_encoder
        paths = ["" if p is None else str(p) for p in items.image_path]
        image, mask = _cached(
            cache,
            "image",
            enc,
            fingerprint_images(paths),
            n,
            True,
            lambda: _encode_images(enc, paths, batch_size, progress),
            device,
        )
        image_id = enc.id
        if not mask.any():
            log.warning("no item image could be read; image features left out")
            image = mask = image_id = None

    joint = text_id is not None and image_id == text_id and text_id.startswith("clip:")
    return ItemFeatures(
        items=items,
        text=text,
        image=image,
        image_mask=mask,
        text_encoder=text_id,
        image_encoder=image_id,
        joint_space=joint,
        text_word_drop=dropped,
        word_drop=float(word_drop) if dropped is not None else 0.0,
    )
