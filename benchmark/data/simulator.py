"""xmarket-sim: a synthetic XMarket twin written in XMarket's exact raw formats (docs/twin.md).

Why: no machine here can download XMarket, yet the suite must compare methods on data whose
structure is known. The generator plants that structure (themes spanning domains, heavy-tailed
popularity, users in 1/2/3 domains, segment-specific complementary-theme transitions = the
"user view" effect of UniEmbedding section 1, day-granular dates with ties, missing images) and
writes it as ``us/{Category}/ratings_us_{Category}.txt.gz`` + ``metadata_us_{Category}.json.gz``
+ ``images/{asin}.png``, so the real XMarket loader (docs/protocol.md 1.3) reads it unchanged.

Every parameter is calibrated from XMarket's published statistics (docs/protocol.md 1.2, paper README:
domain item shares, 65.90/30.35/3.75 % users in 1/2/3 domains, tail-50% items = 10.9 % of
interactions, 15M interactions / 2.65M users), never from any method's results. The output is
labelled synthetic (``SIMULATED.json``). Deterministic per seed: same seed and out_dir ->
byte-identical files (gzip mtime = 0; image URLs are relative to out_dir, so a copied twin keeps its bytes).

One job per module: the knobs (``sim_config``), the item catalogue (``sim_catalogue``), users and
their walk (``sim_behaviour``), item text (``sim_text``) and images (``sim_images``), the raw files
(``sim_files``). This module runs them into a temporary sibling directory, renames it into place
(:func:`generate`) and measures the written files (:func:`measured_stats`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.data import sim_images, sim_text
from benchmark.data.sim_behaviour import build_users, simulate
from benchmark.data.sim_catalogue import build_world
from benchmark.data.sim_config import PRESETS, SimConfig, component_rng
from benchmark.data.sim_files import file_order, item_metadata, reviewer_ids, write_metadata, write_ratings
from benchmark.errors import ConfigError, DataError
from benchmark.fsutil import pid_alive

GENERATOR = "xmarket-sim"
VERSION = 2  # 2: image URLs relative to the dataset directory (relocatable; 1 wrote absolute file:// URLs)
MARKER = "SIMULATED.json"


def _write_all(cfg: SimConfig, scale: str, seed: int, tmp: Path, progress: bool) -> None:
    world = build_world(cfg, seed)
    users = build_users(cfg, world, seed)
    rows = simulate(cfg, world, users, seed, progress)
    uid = reviewer_ids(cfg.n_users, component_rng(seed, 5))

    # Item content: text and images carry the latent through two noisy channels.
    rng_c = component_rng(seed, 7)
    word_vecs = rng_c.normal(0.0, 1.0, (cfg.n_themes, 12, cfg.latent_dim)).astype(np.float32)
    offset = world.latent - world.centre[world.theme]
    texts = sim_text.make_texts(
        asin=world.asin,
        domain_names=cfg.domains,
        domain=world.domain,
        theme=world.theme,
        theme_ids=world.theme_ids,
        latent=offset,
        word_vecs=word_vecs,
        text_noise=cfg.text_noise,
        rng=rng_c,
    )
    rng_i = component_rng(seed, 8)
    has_img = rng_i.random(len(world.domain)) < cfg.image_share
    proj = rng_i.normal(0.0, 1.0, (cfg.latent_dim, 6)).astype(np.float32)
    layout = np.tanh(offset @ proj / (cfg.item_spread * math.sqrt(cfg.latent_dim)))
    pal = sim_images.palettes(cfg.n_themes, rng_i)
    colors = np.clip(pal[world.theme] + rng_i.normal(0.0, 0.05, (len(world.domain), 3, 3)), 0.0, 1.0).astype(
        np.float32
    )

    (tmp / "images").mkdir()
    idx = np.flatnonzero(has_img)
    asin_str = world.asin.view("S10").ravel().astype(str)
    paths = [tmp / "images" / f"{asin_str[i]}.png" for i in idx]
    with tqdm(total=len(idx), desc="xmarket-sim: images", unit="img", disable=not progress) as bar:
        sim_images.write_pngs(
            paths,
            colors[idx],
            world.domain[idx],
            layout[idx],
            cfg.image_noise,
            cfg.image_size,
            rng_i,
            on_batch=bar.update,
        )

    records = item_metadata(cfg, world, rows, texts, has_img, seed)
    order = file_order(rows.user, rows.day, component_rng(seed, 9))
    item_dom = world.domain[rows.item]
    files = tqdm(total=2 * len(cfg.domains), desc="xmarket-sim: files", unit="file", disable=not progress)
    for d, name in enumerate(cfg.domains):
        folder = tmp / "us" / name
        folder.mkdir(parents=True)
        o = order[item_dom[order] == d]
        write_ratings(
            folder / f"ratings_us_{name}.txt.gz",
            uid[rows.user[o]],
            world.asin[rows.item[o]],
            rows.rating[o],
            rows.day[o],
            cfg.gzip_level,
        )
        write_metadata(
            folder / f"metadata_us_{name}.json.gz",
            [records[i] for i in np.flatnonzero(world.domain == d)],
            cfg.gzip_level,
        )
        files.update(2)
    files.close()
    marker = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "scale": scale,
        "seed": seed,
        "params": dataclasses.asdict(cfg),
    }
    (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _remove_dead_siblings(out_dir: Path) -> None:
    """Delete ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` folders left by killed generators."""
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(?:tmp|old)-(\d+)$")
    for path in out_dir.parent.iterdir():
        m = pattern.match(path.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def generate(out_dir: Path, scale: str = "small", seed: int = 0, progress: bool = True) -> Path:
    """Write the twin at ``scale`` into ``out_dir`` atomically and return ``out_dir``.

    The files are built in a temporary sibling directory and renamed onto ``out_dir`` only when
    complete, so a crash never leaves a half dataset. An existing ``out_dir`` is replaced only
    if it is empty or holds an earlier xmarket-sim output (never someone's real data).
    """
    if scale not in PRESETS:
        raise ConfigError(f"unknown xmarket-sim scale {scale!r}; presets: {', '.join(PRESETS)}")
    cfg = PRESETS[scale]
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).exists())
    ):
        raise DataError("refusing to overwrite: not an xmarket-sim output directory", out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_siblings(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_all(cfg, scale, seed, tmp, progress)
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ----------------------------------------------------------------------------------- measuring


def measured_stats(data_dir: Path) -> dict:
    """The planted statistics, measured from the written files only (for the dataset card and
    tests): users by number of domains, tail-50% interaction share, sequence length, domain
    shares, missing images, same-day ties, rating distribution."""
    data_dir = Path(data_dir)
    frames, n_img, n_meta = [], 0, 0
    domains = json.loads((data_dir / MARKER).read_text())["params"]["domains"]
    items_per_domain = {}
    for d, name in enumerate(domains):
        f = pd.read_csv(
            data_dir / "us" / name / f"ratings_us_{name}.txt.gz",
            sep=" ",
            header=None,
            names=["userId", "itemId", "rate", "date"],
            dtype={"itemId": str},
            compression="gzip",
        )
        f["domain"] = d
        frames.append(f)
        items_per_domain[name] = f["itemId"].nunique()
        with gzip.open(data_dir / "us" / name / f"metadata_us_{name}.json.gz", "rt", encoding="utf-8") as fh:
            for line in fh:
                n_meta += 1
                n_img += json.loads(line)["imgUrl"] != []
    df = pd.concat(frames, ignore_index=True)
    m = len(df)
    per_user = df.groupby("userId", sort=False)["domain"].nunique().value_counts(normalize=True).sort_index()
    freq = np.sort(df.groupby(["domain", "itemId"], sort=False).size().to_numpy())
    seq = df.groupby("userId", sort=False).size()
    srt = df.sort_values(["userId", "date"], kind="stable")
    same = srt["userId"].to_numpy()[1:] == srt["userId"].to_numpy()[:-1]
    tie = same & (srt["date"].to_numpy()[1:] == srt["date"].to_numpy()[:-1])
    n_items = sum(items_per_domain.values())
    return {
        "users": int(seq.size),
        "items_in_ratings": int(n_items),
        "items_in_metadata": int(n_meta),
        "interactions": int(m),
        "users_by_n_domains": {int(k): round(float(v), 4) for k, v in per_user.items()},
        "tail50_interaction_share": round(float(freq[: len(freq) // 2].sum() / m), 4),
        "mean_seq_len": round(float(seq.mean()), 3),
        "max_seq_len": int(seq.max()),
        "domain_item_share": {k: round(v / n_items, 4) for k, v in items_per_domain.items()},
        "domain_interaction_share": {
            name: round(float((df["domain"] == d).mean()), 4) for d, name in enumerate(domains)
        },
        "missing_image_share": round(1.0 - n_img / max(n_meta, 1), 4),
        "same_day_share_of_consecutive_pairs": round(float(tie.sum() / max(same.sum(), 1)), 4),
        "rating_share": {
            int(k): round(float(v), 4)
            for k, v in df["rate"].value_counts(normalize=True).sort_index().items()
        },
        "date_range": [str(df["date"].min()), str(df["date"].max())],
    }
