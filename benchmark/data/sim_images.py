"""Item images for the synthetic XMarket twin (docs/twin.md, "Items": images from the latent).

The picture carries the same hidden structure as the text, through another channel: the theme
sets the palette, the domain sets the shape family (book cover, round device, phone), the item
latent perturbs the layout (position, size, rotation, stripe frequency, light direction), and
pixel noise blurs it all. Rendering is vectorised over a batch of items in numpy; PIL only
encodes the PNG bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def palettes(n_themes: int, rng: np.random.Generator) -> np.ndarray:
    """Three colours per theme in [0, 1], [T, 3, 3]: hues spread evenly so themes differ."""
    hue = (np.arange(n_themes) / n_themes + rng.uniform(0, 1 / n_themes, n_themes))[:, None]
    hue = (hue + np.array([0.0, 0.33, 0.6])[None, :] + rng.uniform(-0.06, 0.06, (n_themes, 3))) % 1.0
    sat = rng.uniform(0.45, 0.95, (n_themes, 3))
    val = np.stack(
        [
            rng.uniform(0.75, 0.95, n_themes),
            rng.uniform(0.35, 0.7, n_themes),
            rng.uniform(0.6, 1.0, n_themes),
        ],
        1,
    )
    return _hsv_to_rgb(hue, sat, val)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack(
        [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0
    )
    return np.take_along_axis(table, i[None, ..., None], 0)[0]


def _book(u, v, s, freq):
    """A book cover: upright rectangle, horizontal bands and a spine."""
    shape = (np.abs(u) < 0.55 * s) & (np.abs(v) < 0.8 * s)
    return shape, shape & ((np.sin(freq * np.pi * v) > 0.3) | (u < -0.42 * s))


def _disc(u, v, s, freq):
    """A round device (speaker, lens): a disc with concentric rings."""
    r = np.sqrt(u * u + v * v)
    shape = r < 0.75 * s
    return shape, shape & (np.sin(freq * np.pi * r) > 0.0)


def _phone(u, v, s, freq):
    """A phone-like slab: rounded rectangle with a striped screen."""
    shape = (np.abs(u) / (0.42 * s)) ** 4 + (np.abs(v) / (0.82 * s)) ** 4 < 1.0
    screen = (np.abs(u) < 0.32 * s) & (np.abs(v) < 0.62 * s)
    return shape, screen & (np.sin(freq * np.pi * (u + v)) > -0.4)


def render(
    colors: np.ndarray,
    domain: np.ndarray,
    layout: np.ndarray,
    noise: float,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render a batch: colors [B, 3, 3] in [0, 1], domain [B], layout [B, 6] in (-1, 1).

    Returns uint8 [B, size, size, 3]. Shape family = domain % 3.
    """
    g = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    lay = layout.astype(np.float32)
    cx, cy = 0.25 * lay[:, 0, None, None], 0.25 * lay[:, 1, None, None]
    s = 0.6 + 0.2 * lay[:, 2, None, None]
    th = 0.5 * lay[:, 3, None, None]
    freq = 3.0 + 2.0 * (lay[:, 4, None, None] + 1.0)
    phi = np.pi * lay[:, 5, None, None]
    dx, dy = xx[None] - cx, yy[None] - cy
    u = np.cos(th) * dx + np.sin(th) * dy
    v = -np.sin(th) * dx + np.cos(th) * dy
    fam = domain % 3
    shape = np.zeros(u.shape, dtype=bool)
    detail = np.zeros(u.shape, dtype=bool)
    for f, fn in enumerate((_book, _disc, _phone)):  # each family's masks only for its items
        idx = np.flatnonzero(fam == f)
        if len(idx):
            shape[idx], detail[idx] = fn(u[idx], v[idx], s[idx], freq[idx])

    grad = 0.75 + 0.25 * (np.cos(phi) * xx[None] + np.sin(phi) * yy[None] + 1.0) / 2.0
    label = shape.astype(np.int8)  # 0 background, 1 shape, 2 detail
    label[detail] = 2
    img = colors.reshape(-1, 3)[(3 * np.arange(len(domain)))[:, None, None] + label]
    img *= np.where(label == 0, grad, np.float32(1.0))[..., None]
    img = img + np.float32(noise) * rng.standard_normal(size=img.shape, dtype=np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_pngs(
    paths: list[Path],
    colors: np.ndarray,
    domain: np.ndarray,
    layout: np.ndarray,
    noise: float,
    size: int,
    rng: np.random.Generator,
    batch: int = 2048,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Render and encode one PNG per path, ``batch`` items at a time (bounded memory)."""
    for lo in range(0, len(paths), batch):
        hi = min(lo + batch, len(paths))
        arr = render(colors[lo:hi], domain[lo:hi], layout[lo:hi], noise, size, rng)
        for k in range(hi - lo):
            Image.fromarray(arr[k], "RGB").save(paths[lo + k], format="PNG", compress_level=1)
        if on_batch is not None:
            on_batch(hi - lo)
