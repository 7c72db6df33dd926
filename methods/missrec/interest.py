"""MISSRec's interest discovery: k-means over the adapted item tokens, and per-sequence interest sets.

Before every epoch the authors' trainer (``_multimodal_interest_discovery``) adapts every item's
text and image vector (``W_t t_i + b_t``, ``W_v v_i + b_v``), clusters all those tokens with
k-means (5 iterations, Euclidean) into K = ceil(ratio * (N_text + N_img)) clusters, stores the
centroids as a non-learned buffer and maps each item's text and image token to its cluster id
(+1: id 0 is padding). The code uses torchpq's CUDA mini-batch k-means; here faiss.Kmeans on CPU
(methods.md 15). Unlike the code, an item without an image contributes no image token (the code
clusters its ``b_v``; section 15: use the empty mask).

A sequence's interest tokens are the unique cluster ids of its items' text and image tokens
(a set: no positions), padded with 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Interests:
    """One interest discovery: centroids (row 0 = padding) and item -> cluster id lookups.

    ``text_cluster[i]`` / ``image_cluster[i]`` are 1-based cluster ids of item ``i``'s tokens;
    ``image_cluster[i] = 0`` when the item has no image.
    """

    centroids: np.ndarray  # float32 [K+1, d], row 0 = zeros (padding)
    text_cluster: np.ndarray  # int64 [N]
    image_cluster: np.ndarray  # int64 [N]
    seconds: float
    cpu_seconds: float = 0.0

    @property
    def k(self) -> int:
        return len(self.centroids) - 1


def n_interests(ratio: float, n_tokens: int) -> int:
    """The authors' rule K = max(ceil(ratio * (N_text + N_img)), 1), capped at the number of tokens."""
    return int(min(max(math.ceil(ratio * n_tokens), 1), max(n_tokens, 1)))


def discover_interests(text_tokens: np.ndarray, image_tokens: np.ndarray | None, image_mask: np.ndarray | None,
                       ratio: float, niter: int, seed: int, threads: int = 1) -> Interests:
    """k-means over the text tokens of all items and the image tokens of the items with an image."""
    import faiss

    t0, c0 = time.perf_counter(), time.process_time()
    parts = [np.asarray(text_tokens, dtype=np.float32)]
    has_image = np.zeros(len(text_tokens), dtype=bool)
    if image_tokens is not None and image_mask is not None:
        has_image = np.asarray(image_mask, dtype=bool)
        parts.append(np.asarray(image_tokens, dtype=np.float32)[has_image])
    points = np.ascontiguousarray(np.concatenate(parts, axis=0))
    k = n_interests(ratio, len(points))
    faiss.omp_set_num_threads(max(1, int(threads)))
    km = faiss.Kmeans(points.shape[1], k, niter=int(niter), seed=int(seed) % (2**31), verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(points)
    _, assign = km.index.search(points, 1)
    ids = assign[:, 0].astype(np.int64) + 1  # +1: 0 is padding
    n = len(text_tokens)
    image_cluster = np.zeros(n, dtype=np.int64)
    image_cluster[has_image] = ids[n:]
    centroids = np.zeros((k + 1, points.shape[1]), dtype=np.float32)
    centroids[1:] = km.centroids
    return Interests(centroids=centroids, text_cluster=ids[:n].copy(), image_cluster=image_cluster,
                     seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)


def interest_sets(text_ids: torch.Tensor, image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique non-zero cluster ids per row of ``[text_ids | image_ids]`` ([B, L] each, 0 = none).

    Returns (interests int64 [B, K_max] ascending, padded with 0; lengths [B]). A row without any
    id keeps one padding slot (length 0); callers never pass one (every real item has a text token).
    """
    tokens = torch.cat([text_ids, image_ids], dim=1)
    tokens, _ = tokens.sort(dim=1)
    first = torch.ones_like(tokens, dtype=torch.bool)
    first[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    keep = first & (tokens > 0)
    lengths = keep.sum(1)
    width = max(int(lengths.max()) if len(lengths) else 1, 1)
    slot = keep.long().cumsum(1) - 1
    out = torch.zeros(len(tokens), width, dtype=torch.long, device=tokens.device)
    rows = torch.arange(len(tokens), device=tokens.device).unsqueeze(1).expand_as(tokens)
    out[rows[keep], slot[keep]] = tokens[keep]
    return out, lengths
