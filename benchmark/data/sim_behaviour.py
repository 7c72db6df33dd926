"""xmarket-sim's users and their behaviour: sequence lengths, domains, preferences and the walk.

Users get heavy-tailed sequence lengths, 1/2/3 domains in XMarket's shares, a segment and sparse
theme preferences; the walk then draws each next item (same theme / the segment's complementary
theme / a fresh preference), repairs repeated (user, item) pairs and places day-granular dates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfinv
from tqdm.auto import tqdm

from benchmark.data.sim_catalogue import Sampler, World, largest_remainder_counts
from benchmark.data.sim_config import EPOCH, SimConfig, component_rng
from benchmark.errors import ConfigError, DataError


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


def build_users(cfg: SimConfig, world: World, seed: int) -> _Users:
    rng = component_rng(seed, 3)
    u_n, n_d = cfg.n_users, len(cfg.domains)
    lam = _lomax_scale(cfg)
    x = lam * (rng.random(u_n) ** (-1.0 / cfg.seq_len_tail) - 1.0)
    length = np.minimum(cfg.min_seq_len + np.floor(x), cfg.max_seq_len).astype(np.int32)
    # Number of domains: exact shares, assigned through a Gaussian copula with the length.
    rank = np.argsort(np.argsort(length + rng.random(u_n), kind="stable"), kind="stable")
    z = np.sqrt(2.0) * _erfinv(2.0 * (rank + 0.5) / u_n - 1.0)
    score = cfg.len_domains_corr * z + math.sqrt(1.0 - cfg.len_domains_corr**2) * rng.normal(size=u_n)
    k_counts = largest_remainder_counts(u_n, cfg.user_domains_share[:n_d])
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
    return erfinv(np.clip(y, -1 + 1e-12, 1 - 1e-12))


# ----------------------------------------------------------------------------------- behaviour


@dataclass
class Rows:
    user: np.ndarray  # int64 [M], original user index
    item: np.ndarray  # int32 [M]
    rating: np.ndarray  # int8 [M]
    day: np.ndarray  # int32 [M], days since 1970-01-01
    step: np.ndarray  # int32 [M]


def simulate(cfg: SimConfig, world: World, users: _Users, seed: int, progress: bool) -> Rows:
    """The walk, one step for all active users at once (users sorted by length, longest first)."""
    rng = component_rng(seed, 4)
    n_d, t_n = len(cfg.domains), cfg.n_themes
    order = np.argsort(-users.length, kind="stable")
    length = users.length[order]
    allowed, seg = users.allowed[order], users.segment[order]
    prefs, pref_cum, n_pref = users.prefs[order], users.pref_cum[order], users.n_pref[order]
    pref_used = np.arange(cfg.max_prefs)[None, :] < n_pref[:, None]
    fpos, fdom = users.forced_pos[order], users.forced_dom[order]
    u_n = len(order)
    cell = world.theme.astype(np.int64) * n_d + world.domain
    sampler = Sampler(cell, world.pop, t_n * n_d)
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
    return Rows(user, item, rating, day, step)


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
            dom_sampler = dom_sampler or Sampler(world.domain.astype(np.int64), world.pop, n_d)
            item[pending] = dom_sampler.draw(grp_dom, rng.random(len(pending)))
        else:  # a heavy user exhausted the popular items: any item of the domain
            flat_sampler = flat_sampler or Sampler(world.domain.astype(np.int64), np.ones(n_items), n_d)
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
