"""Raw content embeddings, no training (UniEmbedding Table 1, 'CLIP').

The paper embeds item text and image with pretrained CLIP and uses them directly. Here the
suite's configured encoders stand in: in a joint space (CLIP text + image) the two vectors are
averaged, with the text vector standing in for a missing image (paper 4.3); otherwise the
L2-normalised text and image vectors are concatenated (a missing image contributes zeros).
The table column says which encoders were used, so a MiniLM run is never mistaken for CLIP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def raw_content_vectors(features: ItemFeatures, use_image: bool = True) -> np.ndarray:
    """The no-training content vector of every item (see module docstring for the rule)."""
    text = _unit(np.asarray(features.text))
    if not use_image or "image" not in features.modalities:
        return text
    if features.joint_space:
        return _unit((text + _unit(features.image_or_text())) / 2)
    image = _unit(np.asarray(features.image)) * features.image_mask[:, None]
    return np.concatenate([text, image], axis=1)


def short_encoder(encoder_id: str) -> str:
    """'minilm:sentence-transformers/...@sha256:..' -> 'minilm'; 'clip:ViT-B-32/openai@..' -> 'clip:ViT-B-32/openai';
    a text backend other than torch fp32 stays in the label ('minilm+onnx-int8'): those are other vectors."""
    backend = f"+{encoder_id.split('+backend=', 1)[1].split('+', 1)[0]}" if "+backend=" in encoder_id else ""
    if encoder_id.startswith(("clip:", "hf:")):
        return encoder_id.split("@", 1)[0] + backend
    return encoder_id.split(":", 1)[0] + backend


class RawContent(Method):
    """CLIP / raw content: the suite's frozen text (+ image) features used as they are."""

    name = "clip"
    display_name = "CLIP"
    paper_column = "CLIP"
    requires = frozenset({"text"})
    trains = False  # learns nothing: its training budget is "untrained"
    uses = frozenset({"image"})

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self._emb = raw_content_vectors(features, use_image=bool(cfg["use_image"]))

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def display(self, features: ItemFeatures | None = None) -> str:
        if features is None:
            return self.display_name
        return f"CLIP [{' + '.join(sorted({short_encoder(e) for e in features.encoder_ids().values()}))}]"
