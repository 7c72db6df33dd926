"""The tiny hand-made UniEmbedding world that several test files train on (one place, not a copy each)."""

from __future__ import annotations

import numpy as np

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.uniembedding import UniEmbedding

N_ITEMS, D_TEXT, D_IMAGE = 40, 12, 8
TINY = {"dim": 8, "epochs": 2, "batch_size": 16, "n_domain_experts": 2, "n_shared_experts": 2,
        "encoder_ffn": 16, "projection_heads": 2, "max_len": 6, "chunk_tokens": 12}


def tiny_view(seed: int = 0, used: int = N_ITEMS) -> TrainView:
    """50 random users over the first ``used`` of N_ITEMS items (3 domains, by item index mod 3)."""
    rng = np.random.default_rng(seed)
    domain = np.arange(N_ITEMS) % 3
    seqs = [list(rng.choice(used, int(rng.integers(1, 9)))) for _ in range(50)]
    return TrainView.from_sequences(seqs, domain)


def tiny_features(view: TrainView, seed: int = 0, joint: bool = False) -> ItemFeatures:
    rng = np.random.default_rng(seed)
    d_image = D_TEXT if joint else D_IMAGE
    return ItemFeatures(items=view.items, text=rng.normal(size=(N_ITEMS, D_TEXT)).astype(np.float32),
                        image=rng.normal(size=(N_ITEMS, d_image)).astype(np.float32),
                        image_mask=np.arange(N_ITEMS) % 4 != 0, joint_space=joint)


def tiny_cfg(cls: type[UniEmbedding] = UniEmbedding, **over) -> dict:
    return {**cls.default_config(), **TINY, **over}


def fit(cls: type[UniEmbedding], view: TrainView, features: ItemFeatures, seed: int = 0, **over) -> UniEmbedding:
    method = cls()
    method.fit(view, features, tiny_cfg(cls, **over), RunContext(seed=seed))
    return method
