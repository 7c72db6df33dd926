"""Image encoders: ``offline-descriptor`` (no weights) and ``clip:<arch>/<pretrained>`` (open_clip).

The paper encodes item images with CLIP's image tower [seed 4.3]. No image-encoder weights
can be downloaded here, so the offline default is a classical descriptor that still carries
real visual information (colour, colour layout, edge structure); its id says what it is, so
it is never reported as CLIP. Images are decoded with PIL (torchvision's decoders are not
available with the CPU torch, see benchmark/compat.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import BenchmarkError
from benchmark.features.cache import file_sha256
from benchmark.features.hub import IMAGE_FALLBACK, TEXT_FALLBACK, hub_reachable

log = logging.getLogger(__name__)


def load_rgb(path: str | os.PathLike, draft: int | None = None) -> Image.Image | None:
    """An RGB PIL image (transparency composited on white), or None when unreadable."""
    try:
        with Image.open(path) as im:
            if draft:
                im.draft("RGB", (draft, draft))  # JPEG: decode at reduced scale, much faster
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                canvas.alpha_composite(rgba)
                return canvas.convert("RGB")
            return im.convert("RGB")
    except Exception:  # noqa: BLE001 - any undecodable file is "no image" (counted by the caller)
        return None


# ---------------------------------------------------------------------------------------------
# offline descriptor


def _soft_bins(pos: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circular linear interpolation of positions in [0, 1) onto ``n_bins`` bin centres."""
    x = pos * n_bins - 0.5
    lo = np.floor(x)
    w_hi = (x - lo).astype(np.float32)
    lo = lo.astype(np.int64) % n_bins
    return lo, (lo + 1) % n_bins, w_hi


def _rgb_to_hsv(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised RGB -> HSV for float arrays in [0, 1] (..., 3); hue in [0, 1)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx = x.max(axis=-1)
    mn = x.min(axis=-1)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    safe = np.maximum(d, 1e-6)
    rc, gc, bc = (mx - r) / safe, (mx - g) / safe, (mx - b) / safe
    h = np.where(r == mx, bc - gc, np.where(g == mx, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(d > 0, (h / 6.0) % 1.0, 0.0)
    return h.astype(np.float32), s.astype(np.float32), mx.astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class OfflineDescriptor:
    """Colour histogram + colour layout + edge-orientation grid of a 64x64 resize (no weights).

    - colorhist (52): HSV; 12 soft hue bins x 2 saturation x 2 value for chromatic pixels
      (s, v >= 0.2) + 4 value bins for grey/black pixels; fractions, square-rooted (Hellinger).
    - layout (48): mean RGB of a 4x4 grid, centred to [-1, 1] (where colour sits).
    - edgehog (128): HOG-like, gradient magnitude into 8 soft unsigned orientations per cell of
      a 4x4 grid, square-rooted (shape: a circle spreads over all orientations, a square two).
    Each block is L2-normalised, then the concatenation; equal weight per block [proposal].
    """

    id = "offline-descriptor:colorhist+layout+edgehog/v1"
    size = 64
    grid = 4
    hue_bins, sat_bins, val_bins, grey_bins, orient_bins = 12, 2, 2, 4, 8
    dim = 12 * 2 * 2 + 4 + 4 * 4 * 3 + 4 * 4 * 8

    def __init__(self) -> None:
        spec = f"{self.id}|size={self.size}|grid={self.grid}|bins=12,2,2,4,8|bilinear"
        self.weights_hash = hashlib.sha256(spec.encode()).hexdigest()

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        return self.encode_with_mask(paths)[0]

    def encode_with_mask(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        n = len(paths)
        out = np.zeros((n, self.dim), dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        pixels = []
        for i, p in enumerate(paths):
            im = load_rgb(p, draft=2 * self.size) if p else None
            if im is not None:
                pixels.append(np.asarray(im.resize((self.size, self.size), Image.BILINEAR), dtype=np.uint8))
                ok[i] = True
        if pixels:
            out[ok] = self.describe(np.stack(pixels))
        return out, ok

    def describe(self, rgb: np.ndarray) -> np.ndarray:
        """Descriptors of a batch of ``uint8 [B, S, S, 3]`` images (S divisible by the grid)."""
        x = rgb.astype(np.float32) / 255.0
        b, s = x.shape[0], x.shape[1]
        npix = s * s
        img = np.repeat(np.arange(b, dtype=np.int64), npix)

        # colour histogram
        h, sat, val = (a.reshape(-1) for a in _rgb_to_hsv(x))
        chroma = (sat >= 0.2) & (val >= 0.2)
        n_chroma = self.hue_bins * self.sat_bins * self.val_bins
        n_col = n_chroma + self.grey_bins
        sv = (sat >= 0.6).astype(np.int64) * self.val_bins + (val >= 0.6).astype(np.int64)
        lo, hi, w = _soft_bins(h, self.hue_bins)
        grey = np.minimum((val * self.grey_bins).astype(np.int64), self.grey_bins - 1) + n_chroma
        wc = chroma.astype(np.float32)
        bins = np.concatenate([img * n_col + lo * 4 + sv, img * n_col + hi * 4 + sv, img * n_col + grey])
        weights = np.concatenate([wc * (1 - w), wc * w, 1.0 - wc])
        colour = np.bincount(bins, weights=weights, minlength=b * n_col).reshape(b, n_col) / npix
        colour = _unit_rows(np.sqrt(colour))

        # colour layout
        g, c = self.grid, s // self.grid
        layout = x.reshape(b, g, c, g, c, 3).mean(axis=(2, 4)).reshape(b, -1) * 2.0 - 1.0
        layout = _unit_rows(layout)

        # edge-orientation histograms on the grid
        gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        gx = np.zeros_like(gray)
        gy = np.zeros_like(gray)
        gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
        gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
        mag = np.hypot(gx, gy).reshape(-1)
        angle = (np.arctan2(gy, gx).reshape(-1) % np.pi) / np.pi
        lo, hi, w = _soft_bins(angle, self.orient_bins)
        rows = np.arange(s) // c
        cell = (rows[:, None] * g + rows[None, :]).reshape(-1)
        cell = np.tile(cell, b) + img * (g * g)
        base = cell * self.orient_bins
        hog = np.bincount(
            np.concatenate([base + lo, base + hi]),
            weights=np.concatenate([mag * (1 - w), mag * w]),
            minlength=b * g * g * self.orient_bins,
        ).reshape(b, -1)
        hog = _unit_rows(np.sqrt(hog))

        return _unit_rows(np.concatenate([colour, layout, hog], axis=1)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# CLIP (open_clip): one model serves both towers, so text and image share a space


class _WeightsMissing(Exception):
    pass


def _parse_clip(spec: str) -> tuple[str, str]:
    arch, sep, pretrained = spec.partition("/")
    if not arch or not sep or not pretrained:
        raise BenchmarkError(f"encoder 'clip:{spec}': expected clip:<arch>/<pretrained tag or weights file>")
    return arch, pretrained


def _cached_tag_file(cfg: dict) -> str | None:
    """The tag's weights file if already in open_clip's usual caches (HF hub cache, ~/.cache/clip)."""
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    hf = cfg.get("hf_hub", "")
    if hf:
        from huggingface_hub import try_to_load_from_cache

        model_id, filename = os.path.split(hf)
        candidates = (
            [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        if filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for fn in candidates:
            try:
                found = try_to_load_from_cache(model_id, fn)
            except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
                found = None
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = cfg.get("url", "")
    if url:
        local = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(local):
            return local
    return None


class ClipBackend:
    """An open_clip model resolved to one local weights file; loads lazily, shared by both towers."""

    def __init__(self, spec: str, device: str = "cpu"):
        from benchmark import compat

        compat.apply()
        import open_clip
        from open_clip.pretrained import get_pretrained_cfg

        self.arch, self.pretrained = _parse_clip(spec)
        self.device = device
        model_cfg = open_clip.get_model_config(self.arch)
        if model_cfg is None:
            raise BenchmarkError(
                f"encoder 'clip:{spec}': unknown open_clip architecture {self.arch!r} (see open_clip.list_models())"
            )
        self.dim = int(model_cfg["embed_dim"])
        size = model_cfg["vision_cfg"].get("image_size", 224)
        self.draft = 2 * int(max(size) if isinstance(size, (list, tuple)) else size)
        self.tag_cfg: dict = {}
        given = Path(self.pretrained).expanduser()
        if given.is_file():
            self.checkpoint = str(given.resolve())
            label = given.name
        else:
            self.tag_cfg = get_pretrained_cfg(self.arch, self.pretrained)
            if not self.tag_cfg:
                raise _WeightsMissing(
                    f"no weights file {self.pretrained!r} and no open_clip tag of that name for {self.arch}"
                )
            found = _cached_tag_file(self.tag_cfg)
            if found is None and hub_reachable():
                try:
                    found = open_clip.pretrained.download_pretrained(self.tag_cfg)
                except Exception as e:  # noqa: BLE001
                    raise _WeightsMissing(f"weights download failed ({type(e).__name__})") from None
            if not found:
                raise _WeightsMissing(
                    "weights not in the local caches (HF hub cache, ~/.cache/clip) and the model hub is unreachable or offline"
                )
            self.checkpoint = found
            label = self.pretrained
        self.weights_hash = file_sha256(self.checkpoint)
        self.id = f"clip:{self.arch}/{label}@sha256:{self.weights_hash[:12]}"

    @functools.cached_property
    def loaded(self):
        """(model, tokenizer, preprocess), built from the local file only."""
        import open_clip

        kwargs = {}
        if self.tag_cfg:
            kwargs = {
                "force_quick_gelu": bool(self.tag_cfg.get("quick_gelu", False)),
                "image_mean": self.tag_cfg.get("mean"),
                "image_std": self.tag_cfg.get("std"),
                "image_interpolation": self.tag_cfg.get("interpolation"),
                "image_resize_mode": self.tag_cfg.get("resize_mode"),
            }
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.arch, pretrained=self.checkpoint, device=self.device, **kwargs
            )
            tokenizer = open_clip.get_tokenizer(self.arch)
        except Exception as e:  # noqa: BLE001
            first = str(e).splitlines()[0] if str(e) else ""
            raise BenchmarkError(
                f"encoder {self.id!r}: cannot load {self.checkpoint} ({type(e).__name__}: {first[:200]})"
            ) from e
        return model.eval(), tokenizer, preprocess

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, tokenizer, _ = self.loaded
        with torch.inference_mode():
            vecs = model.encode_text(tokenizer(list(texts)).to(self.device), normalize=True)
        return vecs.float().cpu().numpy()

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        model, _, preprocess = self.loaded
        batch = torch.stack([preprocess(im) for im in images]).to(self.device)
        with torch.inference_mode():
            vecs = model.encode_image(batch, normalize=True)
        return vecs.float().cpu().numpy()


@functools.lru_cache(maxsize=2)
def clip_backend(spec: str, device: str = "cpu") -> ClipBackend:
    """One backend per spec, device and process, so text and image encoders share the loaded model."""
    return ClipBackend(spec, device)


def _backend(spec: str, fallback: str, modality: str, device: str = "cpu") -> ClipBackend:
    try:
        return clip_backend(spec, device)
    except _WeightsMissing as e:
        raise BenchmarkError(
            f"{modality} encoder 'clip:{spec}': {e}; use {modality} encoder {fallback!r}"
        ) from None


class ClipTextEncoder:
    """CLIP text tower (the paper's text encoder, seed 4.3); 77-token context."""

    def __init__(self, spec: str, device: str = "cpu"):
        self.backend = _backend(spec, TEXT_FALLBACK, "text", device)
        self.id, self.dim, self.weights_hash = self.backend.id, self.backend.dim, self.backend.weights_hash

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.backend.encode_text(texts)


class ClipImageEncoder:
    """CLIP image tower (the paper's image encoder, seed 4.3)."""

    def __init__(self, spec: str, device: str = "cpu"):
        self.backend = _backend(spec, IMAGE_FALLBACK, "image", device)
        self.id, self.dim, self.weights_hash = self.backend.id, self.backend.dim, self.backend.weights_hash

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        return self.encode_with_mask(paths)[0]

    def encode_with_mask(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        images = [load_rgb(p, draft=self.backend.draft) if p else None for p in paths]
        ok = np.array([im is not None for im in images], dtype=bool)
        if ok.any():
            out[ok] = self.backend.encode_images([im for im in images if im is not None])
        return out, ok
