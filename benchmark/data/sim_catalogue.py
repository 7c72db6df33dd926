"""xmarket-sim's item catalogue: themes spanning domains, items, popularity, ASINs (docs/twin.md).

The "world" every user walks through: each item has a domain, a theme, a latent vector near its
theme's centre and a heavy-tailed popularity; each user segment has a complementary-theme map.
:class:`Sampler` draws items of a group in proportion to popularity (alias tables).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data import sim_text
from benchmark.data.sim_config import SimConfig, component_rng
from benchmark.errors import ConfigError


@dataclass
class World:
    domain: np.ndarray  # int8 [N]
    theme: np.ndarray  # int32 [N]
    latent: np.ndarray  # float32 [N, d]
    centre: np.ndarray  # float32 [T, d]
    pop: np.ndarray  # float64 [N]
    cell_count: np.ndarray  # int64 [T, D]
    theme_ids: np.ndarray  # index into sim_text.THEMES, [T]
    complement: np.ndarray  # int32 [S, T]
    asin: np.ndarray  # uint8 [N, 10]


class Sampler:
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


def largest_remainder_counts(total: int, shares: tuple[float, ...] | np.ndarray) -> np.ndarray:
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


def build_world(cfg: SimConfig, seed: int) -> World:
    """Themes spanning domains, items (domain, theme, latent, popularity), complement maps."""
    rng = component_rng(seed, 1)
    n_d = len(cfg.domains)
    t_n = cfg.n_themes
    if not 1 <= t_n <= sim_text.N_THEMES_AVAILABLE:
        raise ConfigError(f"n_themes must be in 1..{sim_text.N_THEMES_AVAILABLE}, got {t_n}")
    theme_ids = rng.choice(sim_text.N_THEMES_AVAILABLE, size=t_n, replace=False)
    theme_size = rng.lognormal(0.0, cfg.theme_size_sigma, t_n)
    share = np.asarray(cfg.domain_item_share, dtype=np.float64)
    mix = rng.dirichlet(cfg.theme_domain_concentration * share / share.sum(), size=t_n)  # [T, D]
    per_domain = largest_remainder_counts(cfg.n_items, share)
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
    asin = _asins(domain, cfg.domains.index("Books") if "Books" in cfg.domains else -1, component_rng(seed, 2))
    return World(domain, theme, latent, centre, pop, cell_count, theme_ids, complement, asin)
