"""The split manifest: the paper's user split with overlapped and unseen test users.

UniEmbedding (section 4 and 5.1) keeps users with >= 2 interactions over the three domains,
merges each user's interactions into one mixed-domain sequence, splits users 9:1 and evaluates
item-to-item matching on two test populations (overlapped / unseen). The exact construction,
with the gaps the paper leaves filled as [proposal] (docs/protocol.md 0.2), is written into
``Split.meta['construction']`` so it reaches the dataset card and every report.

Everything here is columnar numpy (one stable sort, ``np.repeat``, ``reduceat``, masks): at paper
scale (~2.65M users, ~15M interactions) a per-user Python loop would be the bottleneck.

This module builds the split (:func:`build_split`) and caches it (:func:`cached_split`). The
manifest's hash and file are in :mod:`benchmark.data.split_manifest` (with ``SPLIT_VERSION``, bumped
whenever the construction here changes), the leakage guard in :mod:`benchmark.data.split_leakage`,
the row order both rest on in :mod:`benchmark.data.split_order`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.data.model import Dataset, Histories, Sequences, Split, TestCases, TrainView
from benchmark.data.split_leakage import check_leakage
from benchmark.data.split_manifest import SPLIT_VERSION, compute_manifest_hash, load_split, save_split
from benchmark.data.split_order import concat_ranges, order_rows
from benchmark.errors import ConfigError, DataError
from benchmark.fsutil import cache_entry_refusal

log = logging.getLogger(__name__)

DEFAULT_SETTINGS: dict = {"test_user_frac": 0.1, "overlapped_frac": 0.1, "min_interactions": 2}


def head_mask(counts: np.ndarray) -> np.ndarray:
    """Head = top 50% (floor) of items by frequency; ties -> lower item index; zero count -> tail.

    The paper's head/tail split (section 5.2.2, Figure 6) says only "top 50% of items by training
    frequency"; the tie rule and the zero-count rule are [proposal] and deterministic.
    """
    counts = np.asarray(counts)
    order = np.argsort(-counts.astype(np.int64), kind="stable")
    head = np.zeros(len(counts), dtype=bool)
    head[order[: len(counts) // 2]] = True
    head &= counts > 0
    return head


# --------------------------------------------------------------------------- build


def _check_settings(test_user_frac: float, overlapped_frac: float, min_interactions: int) -> None:
    if not 0.0 <= test_user_frac < 1.0:
        raise ConfigError(f"split: test_user_frac must be in [0, 1), got {test_user_frac}")
    if not 0.0 <= overlapped_frac <= 1.0:
        raise ConfigError(f"split: overlapped_frac must be in [0, 1], got {overlapped_frac}")
    if int(min_interactions) != min_interactions or min_interactions < 1:
        raise ConfigError(f"split: min_interactions must be an integer >= 1, got {min_interactions}")


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def build_split(
    dataset: Dataset,
    seed: int = 0,
    test_user_frac: float = 0.1,
    overlapped_frac: float = 0.1,
    min_interactions: int = 2,
) -> Split:
    """Build the paper's split manifest (docs/protocol.md 0.2), run the leakage check, return it.

    Users with >= ``min_interactions`` interactions are kept and permuted with a seeded PCG64
    generator; ``test_user_frac`` of them become unseen test users, and ``overlapped_frac`` of the
    remaining training users also give up their last interaction as an overlapped test case.
    Target = last interaction; query = the latest earlier item that differs from the target.
    """
    _check_settings(test_user_frac, overlapped_frac, min_interactions)
    settings = {
        "seed": int(seed),
        "test_user_frac": float(test_user_frac),
        "overlapped_frac": float(overlapped_frac),
        "min_interactions": int(min_interactions),
    }
    inter, items = dataset.interactions, dataset.items
    n_items = len(items)
    bar = tqdm(total=5, desc=f"split {dataset.name}", unit="stage", disable=None, leave=False)

    user_count = np.bincount(inter.user, minlength=inter.n_users)
    keep_user = user_count >= min_interactions
    od = order_rows(inter, keep_user)
    bar.update()
    n_kept = len(od.users)
    if n_kept == 0:
        bar.close()
        raise DataError(f"split: no user of {dataset.name!r} has >= {min_interactions} interactions")

    # Seeded 9:1 user split, then the overlapped subset of the training users.
    rng = np.random.default_rng(seed)
    n_unseen = _round(test_user_frac * n_kept)
    is_unseen = np.zeros(n_kept, dtype=bool)
    is_unseen[rng.permutation(n_kept)[:n_unseen]] = True
    train_pos = np.flatnonzero(~is_unseen)
    n_ov = _round(overlapped_frac * len(train_pos))
    is_ov = np.zeros(n_kept, dtype=bool)
    is_ov[train_pos[rng.permutation(len(train_pos))[:n_ov]]] = True
    bar.update()

    # Target = last item; query = latest earlier item that differs from it (repeat rule).
    last = od.last
    target_rep = np.repeat(od.item[last], od.lengths)
    differs = od.item != target_rep
    del target_rep
    pos = np.where(differs, np.arange(len(od.item), dtype=np.int64), -1)
    query_pos = np.maximum.reduceat(pos, od.starts)
    del pos
    target_repeats = np.add.reduceat((~differs).astype(np.int32), od.starts) > 1
    del differs
    has_query = query_pos >= 0
    is_test = is_unseen | is_ov
    is_case = is_test & has_query
    held_out = is_ov & has_query  # a dropped overlapped user keeps its whole sequence in training
    bar.update()

    # Training sequences: every training user's rows minus the held-out last interaction.
    in_train = np.repeat(~is_unseen, od.lengths)
    in_train[last[held_out]] = False
    is_train_user = ~is_unseen
    train_len = od.lengths[is_train_user] - held_out[is_train_user]
    train = Sequences(
        users=od.users[is_train_user].astype(np.int32),
        offsets=np.r_[0, np.cumsum(train_len)].astype(np.int64),
        items=od.item[in_train],
        day=od.day[in_train],
        rating=od.rating[in_train],
    )
    del in_train
    item_train_count = np.bincount(train.items, minlength=n_items).astype(np.int64)
    item_head = head_mask(item_train_count)
    bar.update()

    cp = np.flatnonzero(is_case)
    target = od.item[last[cp]]
    query = od.item[query_pos[cp]]
    cases = TestCases(
        user=od.users[cp].astype(np.int32),
        query=query.astype(np.int32),
        target=target.astype(np.int32),
        overlapped=is_ov[cp],
        target_head=item_head[target],
        target_domain=items.domain[target].astype(np.int16),
        query_domain=items.domain[query].astype(np.int16),
        target_cold=item_train_count[target] == 0,
        query_cold=item_train_count[query] == 0,
    )
    # Next-item protocol: each case's whole time-ordered history before its target.
    history_len = od.lengths[cp] - 1
    histories = Histories(
        offsets=np.r_[0, np.cumsum(history_len)].astype(np.int64),
        items=od.item[concat_ranges(od.starts[cp], history_len)].astype(np.int32),
    )

    counts = {
        "users_total": int(inter.n_users),
        "users_with_interactions": int(np.count_nonzero(user_count)),
        "users_kept": n_kept,
        "users_dropped": int(np.count_nonzero((user_count > 0) & ~keep_user)),
        "interactions_total": int(len(inter)),
        "interactions_kept": int(len(od.item)),
        "train_users": int(len(train.users)),
        "train_interactions": int(len(train.items)),
        "unseen_users": int(n_unseen),
        "overlapped_users": int(n_ov),
        "overlapped_cases": int(np.count_nonzero(cases.overlapped)),
        "unseen_cases": int(np.count_nonzero(~cases.overlapped)),
        "dropped_cases": int(np.count_nonzero(is_test & ~has_query)),
        "dropped_overlapped_cases": int(np.count_nonzero(is_ov & ~has_query)),
        "dropped_unseen_cases": int(np.count_nonzero(is_unseen & ~has_query)),
        "repeat_rule_cases": int(np.count_nonzero(query_pos[cp] < last[cp] - 1)),
        "target_in_user_history_cases": int(np.count_nonzero(target_repeats[cp])),
        "cross_domain_cases": int(np.count_nonzero(cases.query_domain != cases.target_domain)),
        "cold_targets": int(np.count_nonzero(cases.target_cold)),
        "cold_queries": int(np.count_nonzero(cases.query_cold)),
        "cold_target_items": int(len(np.unique(target[cases.target_cold]))),
        "head_items": int(np.count_nonzero(item_head)),
        "items": int(n_items),
    }
    meta = {
        "split_version": SPLIT_VERSION,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "synthetic": bool(dataset.synthetic),
        "settings": settings,
        "counts": counts,
        "construction": _construction_text(settings, counts),
    }
    if dataset.meta.get("undated"):  # declared by the loader: no dates, this order rule replaces them
        meta["undated"] = dataset.meta["undated"]
    split = Split(
        train=train,
        cases=cases,
        histories=histories,
        item_train_count=item_train_count,
        item_head=item_head,
        manifest_hash=compute_manifest_hash(train, cases, histories, item_train_count, item_head, settings),
        meta=meta,
    )
    check_leakage(split, od)
    bar.update()
    bar.close()
    return split


def _construction_text(s: dict, c: dict) -> str:
    return (
        f"Users with at least {s['min_interactions']} interactions over all domains are kept "
        f"({c['users_kept']:,} of {c['users_with_interactions']:,}; {c['interactions_kept']:,} interactions). "
        "Each user's interactions are merged across domains into one sequence ordered by (day, original "
        "file line), the line breaking same-day ties. "
        f"The kept users are permuted with numpy's PCG64 generator (seed {s['seed']}): "
        f"{s['test_user_frac']:.0%} of them ({c['unseen_users']:,}) are unseen test users, none of whose "
        f"interactions are in training, and the other {c['train_users']:,} are training users. "
        f"A random {s['overlapped_frac']:.0%} of the training users ({c['overlapped_users']:,}) are also "
        "overlapped test users: their last interaction is held out as the target and the rest of their "
        "sequence stays in training. "
        "For every test user the target is the last interaction and the query is the latest earlier item "
        "that differs from the target (normally the item just before it; "
        f"{c['repeat_rule_cases']:,} cases skipped a repeat of the target), so query and target may lie in "
        f"different domains ({c['cross_domain_cases']:,} cross-domain cases). "
        f"Users without such an item give no case ({c['dropped_cases']:,} dropped: "
        f"{c['dropped_overlapped_cases']:,} overlapped, who then keep their whole sequence in training, and "
        f"{c['dropped_unseen_cases']:,} unseen). "
        f"Result: {c['overlapped_cases']:,} overlapped and {c['unseen_cases']:,} unseen cases. "
        "Every case also keeps its user's whole time-ordered history before the target (the input of the "
        "next-item protocol; for unseen users none of it is training data). "
        f"Head items are the top 50% of all {c['items']:,} items by training frequency ({c['head_items']:,} "
        "items; ties go to the lower item index, items never in training are tail); "
        f"{c['cold_targets']:,} targets and {c['cold_queries']:,} queries never occur in training (cold)."
    )


def train_view(dataset: Dataset, split: Split) -> TrainView:
    """What a method may see: training sequences and item attributes."""
    if len(split.item_train_count) != len(dataset.items):
        raise DataError(
            f"split has {len(split.item_train_count)} items but dataset {dataset.name!r} has "
            f"{len(dataset.items)}: the split was built for another dataset"
        )
    return TrainView(sequences=split.train, items=dataset.items, item_train_count=split.item_train_count)


def split_cache_key(dataset: Dataset, seed: int = 0, **settings: object) -> str:
    """Cache key: (dataset fingerprint, resolved settings, seed, SPLIT_VERSION)."""
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ConfigError(
            f"split: unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_SETTINGS)}"
        )
    resolved = {**DEFAULT_SETTINGS, **settings}
    resolved = {
        "seed": int(seed),
        "test_user_frac": float(resolved["test_user_frac"]),  # type: ignore[arg-type]
        "overlapped_frac": float(resolved["overlapped_frac"]),  # type: ignore[arg-type]
        "min_interactions": int(resolved["min_interactions"]),  # type: ignore[call-overload]
    }
    blob = json.dumps(
        {"fingerprint": dataset.fingerprint, "settings": resolved, "version": SPLIT_VERSION}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_split(dataset: Dataset, cache_dir: Path, seed: int = 0, **settings: object) -> Split:
    """Load the split for (dataset, settings, seed) from ``cache_dir`` or build and store it.

    A corrupt or outdated cache file is rebuilt, never trusted.
    """
    key = split_cache_key(dataset, seed, **settings)
    safe_name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset.name)
    path = Path(cache_dir) / f"split-{safe_name}-{key}.npz"
    refusal = cache_entry_refusal(path, path.parent) if path.is_file() else None
    if refusal is not None:
        log.warning("split cache %s is not used (%s); rebuilding it", path, refusal)
    elif path.is_file():
        try:  # load_split re-derives the manifest hash from the content: a flipped bit is caught
            split = load_split(path)
            if split.meta.get("dataset_fingerprint") == dataset.fingerprint and len(split.item_head) == len(
                dataset.items
            ):
                return split
            log.warning("split cache %s belongs to other data; rebuilding it", path)
        except DataError as exc:
            log.warning("split cache not used (%s); rebuilding it", exc)
    resolved = {**DEFAULT_SETTINGS, **settings}
    split = build_split(dataset, seed=seed, **resolved)  # type: ignore[arg-type]
    try:
        save_split(split, path)
    except OSError as exc:  # a read-only data dir: the split is rebuilt (deterministically) next time
        log.warning("cannot write the split cache %s (%s); continuing without it", path, exc.strerror or exc)
    return split
