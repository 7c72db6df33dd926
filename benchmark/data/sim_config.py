"""xmarket-sim's knobs: :class:`SimConfig`, the scale presets and the per-component random streams.

Every knob cites its source (docs/twin.md): XMarket's published raw sizes, the paper's filtered
facts, or an a-priori choice made before any method ran. Shared by every part of the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def component_rng(seed: int, part: int) -> np.random.Generator:
    """One independent stream per component, so changing one part never shifts another."""
    return np.random.default_rng(np.random.SeedSequence([seed, part]))
