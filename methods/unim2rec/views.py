"""UniM2Rec's multi-modal item content constructor (seed 003, component 1): three frozen item views.

The paper encodes each item three times with frozen models: text (BERT), image (ResNet-50) and a
cross-modal view (VisualBERT over text and image). Offline we have the suite's text encoder
(MiniLM) and image encoder (the offline descriptor), so [proposal]:

- ``text``: the text vector; an all-zero row (e.g. removed by ``features.degrade``) = no text;
- ``image``: the image vector where ``image_mask`` is True;
- ``cross``: in a joint space (``features.joint_space``, CLIP) the mean of the item's available
  normalised text and image vectors ("CLIP joint space"); otherwise a **text x image fusion**:
  the concatenation [n(t); n(v)] with a zero block for a missing modality, which the view's own
  whitening MoE turns into a learned (gated linear) fusion. It is never called VisualBERT. Like
  VisualBERT on an item with one modality, it exists whenever the item has text or image.

Every input vector is L2-normalised [proposal] so views of different encoders start on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import MissingRequirementError
from benchmark.features.model import ItemFeatures

VIEWS = ("text", "image", "cross")
CROSS_JOINT = "CLIP joint space (mean of the item's text and image vectors)"
CROSS_FUSION = "text x image fusion (concatenation through the cross view's MoE)"


@dataclass(eq=False)
class ItemViews:
    """The frozen inputs of every view for every item, which items have each view, and domains.

    ``alt`` holds the same views built from the word-drop text vectors (UniSRec's feat2CLS), for
    the sequence-sequence augmentation; empty when the features have no word-drop view.
    """

    inputs: dict[str, torch.Tensor]  # view -> float32 [N, d_view]
    masks: dict[str, torch.Tensor]  # view -> bool [N]
    alt: dict[str, torch.Tensor]  # view -> float32 [N, d_view] from the word-drop text
    domain: torch.Tensor  # int64 [N]
    cross: str  # how the cross view was built ("" when it is not used)
    note: str  # what was available, for the log

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def dims(self) -> dict[str, int]:
        return {v: int(x.shape[1]) for v, x in self.inputs.items()}

    def to(self, device: torch.device | str) -> ItemViews:
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return ItemViews(move(self.inputs), move(self.masks), move(self.alt), self.domain.to(device),
                         self.cross, self.note)


def _norm(x: np.ndarray) -> torch.Tensor:
    return F.normalize(torch.from_numpy(np.array(x, dtype=np.float32, copy=True)), dim=1)


def _cross(text: torch.Tensor, has_text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor,
           joint: bool) -> torch.Tensor:
    t = text * has_text[:, None].to(text.dtype)
    v = image * has_image[:, None].to(image.dtype)
    if joint:
        return F.normalize(t + v, dim=1)  # mean direction of the available vectors in the joint space
    return torch.cat([t, v], dim=1)


def build_views(features: ItemFeatures, domain: np.ndarray, views: list[str] | tuple[str, ...]) -> ItemViews:
    """The asked-for views that the features support (image and cross need real image vectors)."""
    if features.text is None:
        raise MissingRequirementError("unim2rec needs text features (features.text is None)")
    text = _norm(features.text)
    has_text = torch.from_numpy(np.abs(np.asarray(features.text)).sum(axis=1) > 0)
    word = None if features.text_word_drop is None else _norm(features.text_word_drop)
    inputs: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    alt: dict[str, torch.Tensor] = {}
    if "text" in views:
        inputs["text"], masks["text"] = text, has_text
        if word is not None:
            alt["text"] = word
    has_images = "image" in features.modalities
    wants_image = [v for v in views if v in ("image", "cross")]
    cross_rule, note = "", "views: " + "+".join(v for v in VIEWS if v in views)
    if wants_image and not has_images:
        note = "text only: the dataset has no image vectors, so the image and cross views are off"
    elif wants_image:
        image = _norm(features.image)
        has_image = torch.from_numpy(np.array(features.image_mask, dtype=bool, copy=True))
        if "image" in views:
            inputs["image"], masks["image"] = image, has_image
        if "cross" in views:
            joint = bool(features.joint_space) and image.shape[1] == text.shape[1]
            cross_rule = CROSS_JOINT if joint else CROSS_FUSION
            inputs["cross"] = _cross(text, has_text, image, has_image, joint)
            masks["cross"] = has_text | has_image
            if word is not None:
                alt["cross"] = _cross(word, has_text, image, has_image, joint)
    if not inputs:
        raise MissingRequirementError(f"unim2rec: none of the views {list(views)} is available")
    return ItemViews(inputs=inputs, masks=masks, alt=alt,
                     domain=torch.from_numpy(np.array(domain, dtype=np.int64, copy=True)),
                     cross=cross_rule, note=note)
