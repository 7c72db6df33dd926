"""ItemFeatures: the frozen content vectors every content method consumes (row = item index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data.model import Items


@dataclass(frozen=True, eq=False)
class ItemFeatures:
    """Text and image vectors for every item, plus which encoder made them.

    ``image_mask[i]`` is True when item ``i`` has a real image vector; rows without one are zero.
    ``joint_space`` is True when text and image vectors live in one space (CLIP), which is when
    the paper's rule "items without an image use the text embedding as image embedding"
    (UniEmbedding 4.3) and averaging the two modalities make sense.
    """

    items: Items
    text: np.ndarray | None = None  # float32 [N, d_text]
    image: np.ndarray | None = None  # float32 [N, d_image]
    image_mask: np.ndarray | None = None  # bool [N]
    text_encoder: str | None = None  # e.g. "minilm", "clip:ViT-B-32/openai"
    image_encoder: str | None = None  # e.g. "offline-descriptor", "clip:ViT-B-32/openai"
    joint_space: bool = False
    #: The word-drop text view (UniSRec's ``feat2CLS``; MISSRec reuses it): the same encoder on
    #: prompts with each word dropped w.p. ``word_drop`` (seeded); None unless the suite asks for it.
    text_word_drop: np.ndarray | None = None  # float32 [N, d_text]
    word_drop: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.items)
        for name in ("text", "image", "image_mask", "text_word_drop"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != n:
                    raise ValueError(f"features.{name} has {len(value)} rows, expected {n}")
                value.setflags(write=False)
        if self.image is not None and self.image_mask is None:
            raise ValueError("features.image needs an image_mask")

    @property
    def modalities(self) -> frozenset[str]:
        have = set()
        if self.text is not None:
            have.add("text")
        if self.image is not None and self.image_mask is not None and self.image_mask.any():
            have.add("image")
        return frozenset(have)

    def encoder_ids(self) -> dict[str, str]:
        out = {}
        if self.text_encoder:
            out["text"] = self.text_encoder
        if self.image_encoder:
            out["image"] = self.image_encoder
        return out

    def image_or_text(self) -> np.ndarray:
        """Image vectors with the text vector standing in where an item has no image.

        Only meaningful in a joint space (UniEmbedding 4.3); elsewhere the missing rows stay zero.
        """
        if self.image is None:
            raise ValueError("no image features")
        if not self.joint_space or self.text is None:
            return np.asarray(self.image)
        out = np.array(self.image, copy=True)
        out[~self.image_mask] = self.text[~self.image_mask]
        return out
