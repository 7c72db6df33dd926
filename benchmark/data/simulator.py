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
byte-identical files (gzip mtime = 0; image URLs hold the absolute out_dir path).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.data import sim_images, sim_text
from benchmark.errors import ConfigError, DataError

GENERATOR = "xmarket-sim"
VERSION = 2  # 2: image URLs relative to the dataset directory (relocatable; 1 wrote absolute file:// URLs)
MARKER = "SIMULATED.json"
EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class SimConfig:
    """Every knob of the twin. Sources: [1.2] = docs/protocol.md 1.2 (XMarket US raw sizes),
    [paper] = UniEmbedding's filtered XMarket facts (../paper/README.md), [a priori] = no
    published statistic exists; set once before any method ran and never tuned on results."""

    n_users: int
    n_items: int
    n_themes: int  # [a priori] docs/twin.md: 40-80 themes at full scale (<= 64 word lists)
    n_segments: int  # [a priori] docs/twin.md: 4-8 "regions"
    max_seq_len: int  # cap of the heavy-tailed length draw (simulation cost)
    popularity_sigma: float  # lognormal sigma of item popularity; fit so tail-50% share ~ 10.9% [paper]
    domains: tuple[str, ...] = ("Books", "Electronics", "Cell_Phones_and_Accessories")
    domain_item_share: tuple[float, ...] = (0.5893, 0.2502, 0.1605)  # [1.2] 84,656 / 35,943 / 23,046 items
    domain_user_weight: tuple[float, ...] = (0.5788, 0.2662, 0.1550)  # [1.2] 9.05M / 4.16M / 2.42M ratings
    user_domains_share: tuple[float, ...] = (0.6590, 0.3035, 0.0375)  # [paper] users in 1 / 2 / 3 domains
    mean_seq_len: float = 5.66  # [paper] ~15M interactions / 2.65M users
    min_seq_len: int = 2  # [paper] users with >= 2 interactions kept
    seq_len_tail: float = 2.0  # [a priori] Lomax shape of the length draw (heavy tail, finite mean)
    len_domains_corr: float = 0.5  # [a priori] longer users span more domains (Gaussian copula)
    latent_dim: int = 8
    theme_size_sigma: float = 0.5  # [a priori] lognormal spread of theme sizes
    theme_domain_concentration: float = (
        3.0  # [a priori] Dirichlet(conc * item share): some themes mostly books
    )
    item_spread: float = 0.5  # item latent = theme centre + item_spread * N(0, I)
    max_prefs: int = 4  # [a priori] sparse preferences: 1 + Poisson(pref_extra_mean), capped
    pref_extra_mean: float = 1.0
    p_same: float = 0.45  # [a priori] next item: same theme (substitute)
    p_complement: float = 0.30  # [a priori] next item: the segment's complementary theme; rest = fresh draw
    complement_cross_domain: float = 0.7  # [a priori] complement theme has another dominant domain
    n_candidates: int = 8  # popularity draws re-weighted by closeness (sampling-importance-resampling)
    closeness_temp: float = 2.0  # weight exp(-||z - z_prev||^2 / (2 * closeness_temp))
    recent_window: int = 4  # no repeat of the last few items inside the walk; later repeats redrawn
    p_same_day: float = 0.3  # [a priori] same-day tie when the domain does not change
    gap_median_days: float = 30.0
    gap_sigma: float = 1.5
    first_day: str = "2005-01-01"  # XMarket was crawled in 2021; reviews span many years
    last_day: str = "2020-12-31"
    rating_probs_pref: tuple[float, ...] = (0.03, 0.03, 0.08, 0.22, 0.64)  # P(1..5), theme in user's prefs
    rating_probs_off: tuple[float, ...] = (0.20, 0.15, 0.15, 0.20, 0.30)  # P(1..5), theme outside prefs
    text_noise: float = 0.15  # share of theme-word slots replaced by another theme's word
    image_share: float = 0.70  # [a priori] ~30 % of items without imgUrl (XMarket has many)
    image_size: int = 48
    image_noise: float = 0.06  # pixel noise std (colours in [0, 1])
    price_missing: float = 0.15
    gzip_level: int = 6  # paper: 1 (3x faster on ~800 MB of ratings, files ~10 % larger)


PRESETS: dict[str, SimConfig] = {
    "tiny": SimConfig(
        n_users=800, n_items=400, n_themes=12, n_segments=4, max_seq_len=30, popularity_sigma=1.8
    ),
    "small": SimConfig(
        n_users=40_000, n_items=8_000, n_themes=48, n_segments=6, max_seq_len=200, popularity_sigma=1.25
    ),
    "paper": SimConfig(
        n_users=2_650_000, n_items=143_645, n_themes=64, n_segments=8, max_seq_len=500, popularity_sigma=1.16
    ),
}


def _rng(seed: int, part: int) -> np.random.Generator:
    """One independent stream per component, so changing one part never shifts another."""
    return np.random.default_rng(np.random.SeedSequence([seed, part]))


# ----------------------------------------------------------------------------------- world


@dataclass
class _World:
    domain: np.ndarray  # int8 [N]
    theme: np.ndarray  # int32 [N]
    latent: np.ndarray  # float32 [N, d]
    centre: np.ndarray  # float32 [T, d]
    pop: np.ndarray  # float64 [N]
    cell_count: np.ndarray  # int64 [T, D]
    theme_ids: np.ndarray  # index into sim_text.THEMES, [T]
    complement: np.ndarray  # int32 [S, T]
    asin: np.ndarray  # uint8 [N, 10]


class _Sampler:
    """Draw an item of a group (cell or domain) in proportion to popularity, vectorised.

    Walker/Vose alias tables, one per group, laid side by side: a draw costs two gathers
    instead of a binary search (the walk makes ~10^8 draws at paper scale).
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        self.perm = np.argsort(group, kind="stable")
        g = group[self.perm]
        self.lo = np.searchsorted(g, np.arange(n_groups), side="left")
        self.size = np.searchsorted(g, np.arange(n_groups), side="right") - self.lo
        w = np.asarray(weight, dtype=np.float64)[self.perm]
        self.prob = np.ones(len(w), dtype=np.float64)
        self.alias = np.arange(len(w), dtype=np.int64)
        for gi in np.flatnonzero(self.size > 1):
            a, n = int(self.lo[gi]), int(self.size[gi])
            p = w[a : a + n] * (n / w[a : a + n].sum())
            if np.all(p == 1.0):
                continue
            pl = p.tolist()
            small = np.flatnonzero(p < 1.0).tolist()
            large = np.flatnonzero(p >= 1.0).tolist()
            prob, alias = self.prob, self.alias
            while small and large:
                s_, l_ = small.pop(), large.pop()
                prob[a + s_] = pl[s_]
                alias[a + s_] = a + l_
                pl[l_] = pl[l_] + pl[s_] - 1.0
                (small if pl[l_] < 1.0 else large).append(l_)

    def draw(self, grp: np.ndarray, u: np.ndarray) -> np.ndarray:
        """grp group ids and u uniforms in [0, 1) (broadcastable) -> item ids, shape of u."""
        x = u * self.size[grp]
        j = np.minimum(x.astype(np.int64), self.size[grp] - 1)
        slot = self.lo[grp] + j
        slot = np.where(x - j < self.prob[slot], slot, self.alias[slot])
        return self.perm[slot]


def _counts(total: int, shares: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` in the given proportions (largest remainder)."""
    s = np.asarray(shares, dtype=np.float64)
    raw = s / s.sum() * total
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - out.sum()]] += 1
    return out


def _asins(domain: np.ndarray, books: int, rng: np.random.Generator) -> np.ndarray:
    """10-char ASINs: ISBN-10s for Books (valid check digit, 'X' for 10, as ~1/11 of real ones:
    this also keeps readers from parsing the column as integers and dropping leading zeros),
    'B0' + 8 alphanumerics for the other domains."""
    n = len(domain)
    alnum = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    check_char = np.frombuffer(b"0123456789X", dtype=np.uint8)
    out = np.zeros((n, 10), dtype=np.uint8)
    todo = np.arange(n)
    while len(todo):
        m = len(todo)
        isbn = rng.integers(0, 10, size=(m, 9))
        isbn[:, 0] = rng.choice([0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 3, 9], size=m)  # English-language groups
        check = (isbn * np.arange(1, 10)).sum(1) % 11
        book_rows = np.concatenate([isbn.astype(np.uint8) + ord("0"), check_char[check][:, None]], 1)
        other = np.concatenate(
            [np.full((m, 1), ord("B")), np.full((m, 1), ord("0")), alnum[rng.integers(0, 36, size=(m, 8))]], 1
        ).astype(np.uint8)
        out[todo] = np.where((domain[todo] == books)[:, None], book_rows, other)
        _, first = np.unique(out.view("S10").ravel(), return_index=True)
        keep = np.zeros(n, dtype=bool)
        keep[first] = True
        todo = np.flatnonzero(~keep)
    return out


def _build_world(cfg: SimConfig, seed: int) -> _World:
    """Themes spanning domains, items (domain, theme, latent, popularity), complement maps."""
    rng = _rng(seed, 1)
    n_d = len(cfg.domains)
    t_n = cfg.n_themes
    if not 1 <= t_n <= sim_text.N_THEMES_AVAILABLE:
        raise ConfigError(f"n_themes must be in 1..{sim_text.N_THEMES_AVAILABLE}, got {t_n}")
    theme_ids = rng.choice(sim_text.N_THEMES_AVAILABLE, size=t_n, replace=False)
    theme_size = rng.lognormal(0.0, cfg.theme_size_sigma, t_n)
    share = np.asarray(cfg.domain_item_share, dtype=np.float64)
    mix = rng.dirichlet(cfg.theme_domain_concentration * share / share.sum(), size=t_n)  # [T, D]
    per_domain = _counts(cfg.n_items, share)
    if per_domain.min() < max(t_n, cfg.max_seq_len):
        raise ConfigError(
            f"n_items={cfg.n_items} too small for {t_n} themes and max_seq_len={cfg.max_seq_len} in every domain"
        )
    domain = np.repeat(np.arange(n_d), per_domain).astype(np.int8)
    theme = np.empty(cfg.n_items, dtype=np.int32)
    start = 0
    for d in range(n_d):  # at least one item per (theme, domain) cell, the rest by size x mix
        w = theme_size * mix[:, d]
        rest = rng.choice(t_n, size=per_domain[d] - t_n, p=w / w.sum())
        theme[start : start + per_domain[d]] = np.concatenate([np.arange(t_n), rest])
        start += per_domain[d]
    shuffle = rng.permutation(cfg.n_items)  # file order is not grouped by theme
    domain, theme = domain[shuffle], theme[shuffle]
    centre = rng.normal(0.0, 1.0, (t_n, cfg.latent_dim)).astype(np.float32)
    latent = centre[theme] + cfg.item_spread * rng.normal(0.0, 1.0, (cfg.n_items, cfg.latent_dim)).astype(
        np.float32
    )
    pop = rng.lognormal(0.0, cfg.popularity_sigma, cfg.n_items)
    cell_count = np.zeros((t_n, n_d), dtype=np.int64)
    np.add.at(cell_count, (theme, domain), 1)

    # Segment complement maps c_s(a): another theme, usually one whose dominant domain differs.
    dominant = np.argmax(cell_count / cell_count.sum(0, keepdims=True), axis=1)
    complement = np.empty((cfg.n_segments, t_n), dtype=np.int32)
    for s in range(cfg.n_segments):
        for a in range(t_n):
            others = np.flatnonzero(np.arange(t_n) != a)
            cross = others[dominant[others] != dominant[a]]
            same = others[dominant[others] == dominant[a]]
            pool = (
                cross
                if (len(cross) and (rng.random() < cfg.complement_cross_domain or not len(same)))
                else same
            )
            if not len(pool):
                pool = np.array([a])
            w = theme_size[pool]
            complement[s, a] = rng.choice(pool, p=w / w.sum())
    asin = _asins(domain, cfg.domains.index("Books") if "Books" in cfg.domains else -1, _rng(seed, 2))
    return _World(domain, theme, latent, centre, pop, cell_count, theme_ids, complement, asin)


# ----------------------------------------------------------------------------------- users


def _lomax_scale(cfg: SimConfig) -> float:
    """Scale of L = min + floor(Lomax(shape, scale)), capped at max_seq_len, giving mean_seq_len."""
    k = np.arange(1, cfg.max_seq_len - cfg.min_seq_len + 1, dtype=np.float64)

    def mean(lam: float) -> float:
        return cfg.min_seq_len + float(np.sum((1.0 + k / lam) ** (-cfg.seq_len_tail)))

    lo, hi = 1e-6, 1e6
    if mean(hi) < cfg.mean_seq_len:
        raise ConfigError(f"mean_seq_len={cfg.mean_seq_len} unreachable with max_seq_len={cfg.max_seq_len}")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if mean(mid) < cfg.mean_seq_len else (lo, mid)
    return math.sqrt(lo * hi)


@dataclass
class _Users:
    length: np.ndarray  # int32 [U]
    n_domains: np.ndarray  # int8 [U]
    allowed: np.ndarray  # bool [U, D]
    forced_pos: np.ndarray  # int32 [U, 3], -1 = none
    forced_dom: np.ndarray  # int8 [U, 3]
    segment: np.ndarray  # int16 [U]
    prefs: np.ndarray  # int32 [U, P]
    pref_cum: np.ndarray  # float32 [U, P], cumulative weights; slots >= n_pref have weight 0
    n_pref: np.ndarray  # int32 [U]


def _build_users(cfg: SimConfig, world: _World, seed: int) -> _Users:
    rng = _rng(seed, 3)
    u_n, n_d = cfg.n_users, len(cfg.domains)
    lam = _lomax_scale(cfg)
    x = lam * (rng.random(u_n) ** (-1.0 / cfg.seq_len_tail) - 1.0)
    length = np.minimum(cfg.min_seq_len + np.floor(x), cfg.max_seq_len).astype(np.int32)
    # Number of domains: exact shares, assigned through a Gaussian copula with the length.
    rank = np.argsort(np.argsort(length + rng.random(u_n), kind="stable"), kind="stable")
    z = np.sqrt(2.0) * _erfinv(2.0 * (rank + 0.5) / u_n - 1.0)
    score = cfg.len_domains_corr * z + math.sqrt(1.0 - cfg.len_domains_corr**2) * rng.normal(size=u_n)
    k_counts = _counts(u_n, cfg.user_domains_share[:n_d])
    n_domains = np.empty(u_n, dtype=np.int8)
    n_domains[np.argsort(score, kind="stable")] = np.repeat(np.arange(1, len(k_counts) + 1), k_counts)
    length = np.maximum(length, n_domains).astype(np.int32)
    # Which domains: Plackett-Luce draw without replacement, in proportion to domain size.
    keys = np.log(np.asarray(cfg.domain_user_weight)) + rng.gumbel(size=(u_n, n_d))
    dom_order = np.argsort(-keys, axis=1).astype(np.int8)
    allowed = np.zeros((u_n, n_d), dtype=bool)
    np.put_along_axis(allowed, dom_order, np.arange(n_d)[None, :] < n_domains[:, None], axis=1)
    # Every chosen domain is visited: k distinct forced positions in [0, L).
    pos = np.full((u_n, 3), -1, dtype=np.int32)
    p0 = np.floor(rng.random(u_n) * length).astype(np.int32)
    p1 = np.floor(rng.random(u_n) * np.maximum(length - 1, 1)).astype(np.int32)
    p1 += p1 >= p0
    a, b = np.minimum(p0, p1), np.maximum(p0, p1)
    p2 = np.floor(rng.random(u_n) * np.maximum(length - 2, 1)).astype(np.int32)
    p2 += p2 >= a
    p2 += p2 >= b
    pos[:, 0] = p0
    pos[:, 1] = np.where(n_domains >= 2, p1, -1)
    pos[:, 2] = np.where(n_domains >= 3, p2, -1)
    forced_dom = dom_order[:, :3] if n_d >= 3 else np.pad(dom_order, ((0, 0), (0, 3 - n_d)))
    pos[n_domains == 1, 0] = -1  # a one-domain user has no choice anyway
    segment = rng.integers(0, cfg.n_segments, size=u_n).astype(np.int16)
    # Sparse theme preferences, drawn from themes available in the user's domains.
    p_n = cfg.max_prefs
    n_pref = (1 + np.minimum(rng.poisson(cfg.pref_extra_mean, u_n), p_n - 1)).astype(np.int32)
    prefs = np.zeros((u_n, p_n), dtype=np.int32)
    mask_id = (allowed * (1 << np.arange(n_d))).sum(1)
    for m in np.unique(mask_id):
        idx = np.flatnonzero(mask_id == m)
        w = world.cell_count[:, [d for d in range(n_d) if m >> d & 1]].sum(1).astype(np.float64)
        cum = np.cumsum(w / w.sum())
        prefs[idx] = np.minimum(np.searchsorted(cum, rng.random((len(idx), p_n)), side="right"), len(w) - 1)
    wts = rng.gamma(1.0, size=(u_n, p_n)) * (np.arange(p_n)[None, :] < n_pref[:, None])
    pref_cum = np.cumsum(wts / wts.sum(1, keepdims=True), axis=1).astype(np.float32)
    return _Users(
        length, n_domains, allowed, pos, forced_dom.astype(np.int8), segment, prefs, pref_cum, n_pref
    )


def _erfinv(y: np.ndarray) -> np.ndarray:
    from scipy.special import erfinv

    return erfinv(np.clip(y, -1 + 1e-12, 1 - 1e-12))


# ----------------------------------------------------------------------------------- behaviour


@dataclass
class _Rows:
    user: np.ndarray  # int64 [M], original user index
    item: np.ndarray  # int32 [M]
    rating: np.ndarray  # int8 [M]
    day: np.ndarray  # int32 [M], days since 1970-01-01
    step: np.ndarray  # int32 [M]


def _simulate(cfg: SimConfig, world: _World, users: _Users, seed: int, progress: bool) -> _Rows:
    """The walk, one step for all active users at once (users sorted by length, longest first)."""
    rng = _rng(seed, 4)
    n_d, t_n = len(cfg.domains), cfg.n_themes
    order = np.argsort(-users.length, kind="stable")
    length = users.length[order]
    allowed, seg = users.allowed[order], users.segment[order]
    prefs, pref_cum, n_pref = users.prefs[order], users.pref_cum[order], users.n_pref[order]
    pref_used = np.arange(cfg.max_prefs)[None, :] < n_pref[:, None]
    fpos, fdom = users.forced_pos[order], users.forced_dom[order]
    u_n = len(order)
    cell = world.theme.astype(np.int64) * n_d + world.domain
    sampler = _Sampler(cell, world.pop, t_n * n_d)
    dom_share = (world.cell_count / world.cell_count.sum(1, keepdims=True)).astype(np.float64)
    latent = world.latent
    sqnorm = np.einsum("nd,nd->n", latent, latent)
    probs = np.stack([np.cumsum(cfg.rating_probs_off), np.cumsum(cfg.rating_probs_pref)])
    prev_item = np.zeros(u_n, dtype=np.int32)
    prev_theme = np.zeros(u_n, dtype=np.int32)
    prev_dom = np.zeros(u_n, dtype=np.int8)
    recent = np.full((u_n, cfg.recent_window), -1, dtype=np.int32)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "rating", "gap", "step", "dom")}
    chunk = 262_144
    bar = tqdm(total=int(length.sum()), desc="xmarket-sim: behaviour", unit="int", disable=not progress)
    for t in range(int(length.max())):
        n_t = int(np.searchsorted(-length, -t, side="left"))  # users with length > t (a prefix)
        for a in range(0, n_t, chunk):
            sl = slice(a, min(a + chunk, n_t))
            n = sl.stop - sl.start
            # 1. theme: same (substitute) / segment complement / fresh preference draw
            uu = rng.random(n)
            slot = np.minimum((rng.random(n)[:, None] > pref_cum[sl]).sum(1), n_pref[sl] - 1)
            fresh = prefs[sl][np.arange(n), slot]
            if t == 0:
                theme = fresh
            else:
                comp = world.complement[seg[sl], prev_theme[sl]]
                theme = np.where(
                    uu < cfg.p_same, prev_theme[sl], np.where(uu < cfg.p_same + cfg.p_complement, comp, fresh)
                )
            # 2. domain: forced visit of each chosen domain, else by the theme's domain mix
            w = dom_share[theme] * allowed[sl]
            cw = np.cumsum(w, axis=1)
            dom = np.minimum((rng.random(n)[:, None] * cw[:, -1:] > cw).sum(1), n_d - 1).astype(np.int8)
            for j in range(3):
                hit = fpos[sl, j] == t
                dom = np.where(hit, fdom[sl, j], dom)
            # 3. item: popularity draws within (theme, domain), re-weighted by closeness
            grp = theme.astype(np.int64) * n_d + dom
            if t == 0:
                item = sampler.draw(grp, rng.random(n)).astype(np.int32)
            else:
                cand = sampler.draw(grp[:, None], rng.random((n, cfg.n_candidates)))
                zp = latent[prev_item[sl]]
                d2 = (
                    sqnorm[cand]
                    - 2.0 * np.einsum("nkd,nd->nk", latent[cand], zp)
                    + sqnorm[prev_item[sl]][:, None]
                )
                wgt = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2.0 * cfg.closeness_temp))
                wgt[(cand[:, :, None] == recent[sl][:, None, :]).any(2)] = 0.0
                cw = np.cumsum(wgt, axis=1)
                pick = (rng.random(n)[:, None] * cw[:, -1:] >= cw).sum(1)
                item = cand[np.arange(n), np.minimum(pick, cfg.n_candidates - 1)].astype(np.int32)
            # 4. rating: mostly 4-5; 1-2 for draws outside the user's preferred themes
            in_pref = ((theme[:, None] == prefs[sl]) & pref_used[sl]).any(1)
            rating = 1 + (rng.random(n)[:, None] > probs[in_pref.astype(np.int64)]).sum(1)
            # 5. gap in days: ties only while the domain stays the same (keeps file order meaningful)
            if t == 0:
                gap = np.zeros(n, dtype=np.int64)
            else:
                tie = (dom == prev_dom[sl]) & (rng.random(n) < cfg.p_same_day)
                g = np.maximum(1, np.rint(rng.lognormal(math.log(cfg.gap_median_days), cfg.gap_sigma, n)))
                gap = np.where(tie, 0, g).astype(np.int64)
            prev_item[sl], prev_theme[sl], prev_dom[sl] = item, theme, dom
            recent[sl, t % cfg.recent_window] = item
            for key, val in (
                ("user", order[sl]),
                ("item", item),
                ("rating", rating),
                ("gap", gap),
                ("dom", dom),
            ):
                out[key].append(val)
            out["step"].append(np.full(n, t, dtype=np.int32))
        bar.update(n_t)
    bar.close()
    cat = {k: np.concatenate(v) for k, v in out.items()}
    user, item, step, gap = cat["user"].astype(np.int64), cat["item"], cat["step"], cat["gap"]
    # User-major order, then repair repeats of a (user, item) pair and place the dates.
    um = np.lexsort((step, user))
    user, item, step, gap = user[um], item[um], step[um], gap[um]
    rating, dom = cat["rating"][um].astype(np.int8), cat["dom"][um]
    item = _repair_repeats(user, item, world, sampler, dom, cfg, rng)
    day = _place_dates(user, gap, cfg, rng)
    return _Rows(user, item, rating, day, step)


def _member(sorted_keys: np.ndarray, x: np.ndarray) -> np.ndarray:
    i = np.minimum(np.searchsorted(sorted_keys, x), max(len(sorted_keys) - 1, 0))
    return (sorted_keys[i] == x) if len(sorted_keys) else np.zeros(len(x), dtype=bool)


def _repair_repeats(user, item, world, sampler, dom, cfg: SimConfig, rng) -> np.ndarray:
    """A user rates an item once (as in XMarket): a repeated (user, item) pair (beyond the walk's
    recent-item window) is redrawn in its (theme, domain) cell, then in its domain by popularity,
    then uniformly in its domain. The earliest occurrence is kept. Rows are user-major."""
    n_d, n_items = len(cfg.domains), len(world.domain)
    item = item.copy()
    keys = user * n_items + item
    srt = np.argsort(keys, kind="stable")
    sk = keys[srt]
    dup_sorted = np.r_[False, sk[1:] == sk[:-1]]
    kept = sk[~dup_sorted]
    pending = np.sort(srt[dup_sorted])
    accepted = np.zeros(0, dtype=np.int64)
    dom_sampler = flat_sampler = None
    for round_ in range(300):
        if not len(pending):
            return item
        grp_dom = dom[pending].astype(np.int64)
        if round_ < 20:
            grp = world.theme[item[pending]].astype(np.int64) * n_d + grp_dom
            item[pending] = sampler.draw(grp, rng.random(len(pending)))
        elif round_ < 40:
            dom_sampler = dom_sampler or _Sampler(world.domain.astype(np.int64), world.pop, n_d)
            item[pending] = dom_sampler.draw(grp_dom, rng.random(len(pending)))
        else:  # a heavy user exhausted the popular items: any item of the domain
            flat_sampler = flat_sampler or _Sampler(world.domain.astype(np.int64), np.ones(n_items), n_d)
            item[pending] = flat_sampler.draw(grp_dom, rng.random(len(pending)))
        nk = user[pending] * n_items + item[pending]
        first = np.zeros(len(nk), dtype=bool)
        first[np.unique(nk, return_index=True)[1]] = True
        ok = first & ~_member(kept, nk) & ~_member(accepted, nk)
        accepted = np.sort(np.concatenate([accepted, nk[ok]]))
        pending = pending[~ok]
    raise DataError("xmarket-sim: could not remove repeated (user, item) pairs; domain too small")


def _place_dates(user: np.ndarray, gap: np.ndarray, cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """Day of each row (rows user-major): a start day, then the cumulative gaps; over-long spans
    are compressed (gaps scaled down, >= 1 day kept) to fit between first_day and last_day."""
    first = int((np.datetime64(cfg.first_day, "D") - EPOCH).astype(int))
    last = int((np.datetime64(cfg.last_day, "D") - EPOCH).astype(int))
    span_max = last - first
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    span = np.add.reduceat(gap, starts)
    factor = np.minimum(1.0, span_max / np.maximum(span, 1))
    per_row = np.repeat(factor, np.diff(np.r_[starts, len(user)]))
    gap = np.where(gap > 0, np.maximum(1, np.floor(gap * per_row)), 0).astype(np.int64)
    cum = np.cumsum(gap)
    cum -= np.repeat(cum[starts] - gap[starts], np.diff(np.r_[starts, len(user)]))
    span = np.add.reduceat(gap, starts)
    room = np.maximum(span_max - span, 0)
    start_day = first + np.floor(np.sqrt(rng.random(len(starts))) * (room + 1)).astype(
        np.int64
    )  # more recent
    return (np.repeat(start_day, np.diff(np.r_[starts, len(user)])) + cum).astype(np.int32)


# ----------------------------------------------------------------------------------- writing


def _user_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """Amazon-reviewer-like ids: 'A' + 27 uppercase alphanumerics, unique, as uint8 [n, 28]."""
    alnum = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    out = np.empty((n, 28), dtype=np.uint8)
    out[:, 0] = ord("A")
    out[:, 1:] = alnum[rng.integers(0, 36, size=(n, 27))]
    while True:
        _, first = np.unique(out.view("S28").ravel(), return_index=True)
        if len(first) == n:
            return out
        dup = np.setdiff1d(np.arange(n), first)
        out[dup, 1:] = alnum[rng.integers(0, 36, size=(len(dup), 27))]


def _file_order(user: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A deterministic shuffle (real files are not sorted by date) that keeps each user's
    same-day rows in walk order, so sorting by (date, file line) recovers the planted sequence."""
    key = rng.random(len(user))
    grp_order = np.lexsort((np.arange(len(user)), day, user))  # rows arrive in walk order
    g = np.r_[0, np.cumsum((np.diff(user[grp_order]) != 0) | (np.diff(day[grp_order]) != 0))]
    sorted_keys = key[grp_order][np.lexsort((key[grp_order], g))]
    new_key = np.empty_like(key)
    new_key[grp_order] = sorted_keys
    return np.argsort(new_key, kind="stable")


def _gzip_open(path: Path, level: int):
    raw = open(path, "wb")  # closed with the GzipFile below
    return raw, gzip.GzipFile(filename=path.name[:-3], mode="wb", fileobj=raw, compresslevel=level, mtime=0)


def _write_ratings(
    path: Path, uid: np.ndarray, asin: np.ndarray, rating: np.ndarray, day: np.ndarray, level: int
) -> None:
    """``userId itemId rating date``: ratings written as integers, like XMarket's own sample
    (its documented read shows ``3``, ``5``; 4.0 only appears in FOREC's derived files)."""
    d0, d1 = int(day.min()), int(day.max())
    table = np.array([str(EPOCH + np.timedelta64(d, "D")) for d in range(d0, d1 + 1)], dtype="S10")
    table = table.view(np.uint8).reshape(-1, 10)
    raw, gz = _gzip_open(path, level)
    try:
        step = 1 << 20
        for a in range(0, len(rating), step):
            b = min(a + step, len(rating))
            line = np.empty((b - a, 53), dtype=np.uint8)
            line[:, 0:28] = uid[a:b]
            line[:, 28] = 32
            line[:, 29:39] = asin[a:b]
            line[:, 39] = 32
            line[:, 40] = rating[a:b] + ord("0")
            line[:, 41] = 32
            line[:, 42:52] = table[day[a:b] - d0]
            line[:, 52] = 10
            gz.write(line.tobytes())
    finally:
        gz.close()
        raw.close()


def _write_metadata(path: Path, records: list[dict], level: int) -> None:
    raw, gz = _gzip_open(path, level)
    try:
        for a in range(0, len(records), 20_000):
            gz.write("".join(json.dumps(r) + "\n" for r in records[a : a + 20_000]).encode("utf-8"))
    finally:
        gz.close()
        raw.close()


def _metadata(
    cfg: SimConfig, world: _World, rows: _Rows, texts: dict, has_img: np.ndarray, seed: int
) -> list[dict]:
    """One record per item with every key of XMarket's official sample (docs/protocol.md 1.3).

    Image URLs are paths relative to the dataset directory (``images/<asin>.png``; the loader
    resolves them against wherever the dataset lies), so the files' bytes, the dataset fingerprint
    and every run key are the same wherever the twin is generated, copied or moved.
    """
    rng = _rng(seed, 6)
    n = len(world.domain)
    asin = world.asin.view("S10").ravel().astype(str)
    star = np.bincount(rows.item.astype(np.int64) * 5 + rows.rating - 1, minlength=n * 5).reshape(n, 5)
    count = star.sum(1)
    avg = (star * np.arange(1, 6)).sum(1) / np.maximum(count, 1)
    pct = np.rint(100.0 * star / np.maximum(count, 1)[:, None]).astype(int)
    top = count >= np.quantile(count, 0.99) if n > 1 else np.zeros(n, dtype=bool)
    base_price = np.array([14.0, 35.0, 12.0, 20.0])[np.minimum(world.domain, 3)]
    price = np.round(base_price * rng.lognormal(0.0, 0.6, n), 0) - 0.01
    price_ok = rng.random(n) >= cfg.price_missing
    cell = world.theme.astype(np.int64) * len(cfg.domains) + world.domain
    uniform = _Sampler(cell, np.ones(n), cfg.n_themes * len(cfg.domains))
    viewed = uniform.draw(np.repeat(cell[:, None], 6, 1), rng.random((n, 6)))
    books = cfg.domains.index("Books") if "Books" in cfg.domains else -1
    out = []
    for i in range(n):
        a = asin[i]
        if has_img[i]:
            big = f"images/{a}.png"
            small = f"images/{a}._SX24_.png"  # never written: loaders take the largest
            half = cfg.image_size // 2
            img_url: object = json.dumps(
                {small: [half, half], big: [cfg.image_size, cfg.image_size]}, separators=(",", ":")
            )
        else:
            img_url = []
        c = int(count[i])
        brand = texts["brand"][i]
        is_book = int(world.domain[i]) == books
        rel = sorted({asin[j] for j in viewed[i] if j != i})
        out.append(
            {
                "asin": a,
                "title": texts["title"][i],
                "averageRating": f"{avg[i]:.1f}" if c else "",
                "ratingCount": (f"{c:,} global ratings" if c != 1 else "1 global rating") if c else "",
                "amazon_badge": "Best Seller" if top[i] and c else "",
                "ratingDist": {str(s): f"{pct[i, s - 1]}%" for s in range(5, 0, -1)} if c else {},
                "ratingByFeature": {},
                "price": f"${price[i]:.2f}" if price_ok[i] else "",
                "imgUrl": img_url,
                "related": {
                    "sponsored": [],
                    "alsoBought": [],
                    "alsoViewed": rel,
                    "boughtTogether": [],
                    "compared": [],
                },
                "productDetails": {"Publisher": brand, "Language": "English", "ISBN-10": a}
                if is_book
                else {"Manufacturer": brand, "ASIN": a},
                "sellerPage": "" if is_book else f"/stores/{brand}/page/{a}",
                "categories": texts["categories"][i],
                "description": texts["description"][i],
                "overviewFeatures": {} if is_book else {"Brand": brand},
                "features": texts["features"][i],
                "reviewFilters": [],
            }
        )
    return out


def _write_all(cfg: SimConfig, scale: str, seed: int, tmp: Path, progress: bool) -> None:
    world = _build_world(cfg, seed)
    users = _build_users(cfg, world, seed)
    rows = _simulate(cfg, world, users, seed, progress)
    uid = _user_ids(cfg.n_users, _rng(seed, 5))

    # Item content: text and images carry the latent through two noisy channels.
    rng_c = _rng(seed, 7)
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
    rng_i = _rng(seed, 8)
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

    records = _metadata(cfg, world, rows, texts, has_img, seed)
    order = _file_order(rows.user, rows.day, _rng(seed, 9))
    item_dom = world.domain[rows.item]
    files = tqdm(total=2 * len(cfg.domains), desc="xmarket-sim: files", unit="file", disable=not progress)
    for d, name in enumerate(cfg.domains):
        folder = tmp / "us" / name
        folder.mkdir(parents=True)
        o = order[item_dom[order] == d]
        _write_ratings(
            folder / f"ratings_us_{name}.txt.gz",
            uid[rows.user[o]],
            world.asin[rows.item[o]],
            rows.rating[o],
            rows.day[o],
            cfg.gzip_level,
        )
        _write_metadata(
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
    from benchmark.fsutil import pid_alive

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
