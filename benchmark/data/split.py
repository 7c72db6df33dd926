"""The split manifest: the paper's user split with overlapped and unseen test users.

UniEmbedding (section 4 and 5.1) keeps users with >= 2 interactions over the three domains,
merges each user's interactions into one mixed-domain sequence, splits users 9:1 and evaluates
item-to-item matching on two test populations (overlapped / unseen). The exact construction,
with the gaps the paper leaves filled as [proposal] (docs/protocol.md 0.2), is written into
``Split.meta['construction']`` so it reaches the dataset card and every report.

Everything here is columnar numpy (one stable sort, ``np.repeat``, ``reduceat``, masks): at paper
scale (~2.65M users, ~15M interactions) a per-user Python loop would be the bottleneck.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.data.model import Dataset, Histories, Interactions, Sequences, Split, TestCases, TrainView
from benchmark.errors import ConfigError, DataError
from benchmark.fsutil import atomic_write, cache_entry_refusal

log = logging.getLogger(__name__)

SPLIT_VERSION: int = 2
"""Bump when the construction changes: it is part of the manifest hash and of the cache key.

v2: per-case histories (the next-item protocol) are part of the manifest."""

DEFAULT_SETTINGS: dict = {"test_user_frac": 0.1, "overlapped_frac": 0.1, "min_interactions": 2}

_TRAIN_FIELDS = ("users", "offsets", "items", "day", "rating")
_CASE_FIELDS = (
    "user",
    "query",
    "target",
    "overlapped",
    "target_head",
    "target_domain",
    "query_domain",
    "target_cold",
    "query_cold",
)
_DTYPES = {
    "train.users": np.int32,
    "train.offsets": np.int64,
    "train.items": np.int32,
    "train.day": np.int32,
    "train.rating": np.float32,
    "cases.user": np.int32,
    "cases.query": np.int32,
    "cases.target": np.int32,
    "cases.overlapped": np.bool_,
    "cases.target_head": np.bool_,
    "cases.target_domain": np.int16,
    "cases.query_domain": np.int16,
    "cases.target_cold": np.bool_,
    "cases.query_cold": np.bool_,
    "histories.offsets": np.int64,
    "histories.items": np.int32,
    "item_train_count": np.int64,
    "item_head": np.bool_,
}
_META_KEY = "__meta__"


class LeakageError(AssertionError):
    """A split that leaks test information into training. Always a bug in the split code."""


# --------------------------------------------------------------------------- ordering


@dataclass(frozen=True)
class _Ordered:
    """Rows of the kept users sorted by (user, day, line): the mixed-domain sequences."""

    users: np.ndarray  # int32 [K] ascending user index
    starts: np.ndarray  # int64 [K] first sorted position of each user
    lengths: np.ndarray  # int64 [K]
    item: np.ndarray  # int32 [n]
    day: np.ndarray  # int32 [n]
    rating: np.ndarray  # float32 [n]

    @property
    def last(self) -> np.ndarray:
        return self.starts + self.lengths - 1


def _order_rows(inter: Interactions, keep_user: np.ndarray) -> _Ordered:
    """Sort the rows of the kept users by (user, day, line) with one stable integer sort.

    ``line`` is the original file order, the deterministic same-day tie rule (docs/protocol.md 0.2).
    """
    rows = np.flatnonzero(keep_user[inter.user])
    line = inter.line[rows]
    if len(line) > 1 and not np.all(line[1:] > line[:-1]):
        rows = rows[np.argsort(line, kind="stable")]
    user = inter.user[rows].astype(np.int64)
    day = inter.day[rows].astype(np.int64)
    if len(rows):
        dmin = int(day.min())
        span = int(day.max()) - dmin + 1
        if inter.n_users * span < 2**62:
            order = np.argsort(user * span + (day - dmin), kind="stable")
        else:  # pragma: no cover - only for absurd day ranges
            order = np.lexsort((day, user))
        rows = rows[order]
        del order
    user = inter.user[rows]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(rows) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, len(rows)])
    return _Ordered(
        users=user[starts].astype(np.int32),
        starts=starts.astype(np.int64),
        lengths=lengths.astype(np.int64),
        item=inter.item[rows].astype(np.int32),
        day=inter.day[rows].astype(np.int32),
        rating=inter.rating[rows].astype(np.float32),
    )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = starts.astype(np.int64) - np.r_[0, np.cumsum(lengths)[:-1]]
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


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
    od = _order_rows(inter, keep_user)
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
        items=od.item[_ranges(od.starts[cp], history_len)].astype(np.int32),
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
    _check(split, od)
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


# --------------------------------------------------------------------------- hash


def _named_arrays(
    train: Sequences, cases: TestCases, histories: Histories, item_train_count: np.ndarray, item_head: np.ndarray
) -> dict[str, np.ndarray]:
    out = {f"train.{f}": getattr(train, f) for f in _TRAIN_FIELDS}
    out.update({f"cases.{f}": getattr(cases, f) for f in _CASE_FIELDS})
    out["histories.offsets"] = histories.offsets
    out["histories.items"] = histories.items
    out["item_train_count"] = item_train_count
    out["item_head"] = item_head
    return out


def compute_manifest_hash(
    train: Sequences,
    cases: TestCases,
    histories: Histories,
    item_train_count: np.ndarray,
    item_head: np.ndarray,
    settings: dict,
) -> str:
    """sha256 over every array (canonical little-endian dtype), the settings and SPLIT_VERSION.

    Independent of machine byte order and of how the arrays were produced, so the same input and
    seed give the same hash everywhere; it is logged with every run.
    """
    h = hashlib.sha256()
    h.update(f"uie-bench split v{SPLIT_VERSION}\n".encode())
    h.update(json.dumps(settings, sort_keys=True).encode() + b"\n")
    for name, arr in _named_arrays(train, cases, histories, item_train_count, item_head).items():
        dtype = np.dtype(_DTYPES[name]).newbyteorder("<")
        a = np.ascontiguousarray(np.asarray(arr).astype(dtype, copy=False))
        h.update(f"{name}:{dtype.str}:{a.shape}\n".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


# --------------------------------------------------------------------------- leakage


def check_no_leakage(split: Split, dataset: Dataset) -> None:
    """Re-derive each user's sequence from the dataset and assert the split leaks nothing.

    Checks: no unseen user in training; overlapped users are in training; each target is the
    user's last interaction; its row is not in training (training rows of an overlapped user are
    a sub-multiset of their other rows); each query is an earlier interaction that differs from
    the target. A violation is a bug, so it raises :class:`LeakageError` (an AssertionError).
    """
    inter = dataset.interactions
    involved = np.zeros(inter.n_users, dtype=bool)
    for users in (split.train.users, split.cases.user):
        ok = (users >= 0) & (users < inter.n_users)
        if not ok.all():
            raise LeakageError(f"split refers to user {users[~ok][0]} outside the dataset's users")
        involved[users] = True
    _check(split, _order_rows(inter, involved))


def _check(split: Split, od: _Ordered) -> None:
    train, cases = split.train, split.cases
    problems: list[str] = []

    def note(mask: np.ndarray, what: str, users: np.ndarray) -> None:
        if np.any(mask):
            problems.append(f"{int(np.count_nonzero(mask))} {what} (e.g. user {int(users[mask][0])})")

    n_cases = len(cases.user)
    _, first = np.unique(cases.user, return_index=True)
    dup = np.ones(n_cases, dtype=bool)
    dup[first] = False
    note(dup, "users with more than one test case", cases.user)
    unseen = cases.user[~cases.overlapped]
    note(np.isin(unseen, train.users), "unseen test users with training interactions", unseen)
    ov_users = cases.user[cases.overlapped]
    note(~np.isin(ov_users, train.users), "overlapped test users missing from training", ov_users)

    k = np.searchsorted(od.users, cases.user)
    k = np.minimum(k, max(len(od.users) - 1, 0))
    found = (od.users[k] == cases.user) if len(od.users) else np.zeros(n_cases, dtype=bool)
    note(~found, "test users without interactions in the dataset", cases.user)
    if problems:
        raise LeakageError("split leakage: " + "; ".join(problems))

    last = od.last[k]
    note(od.item[last] != cases.target, "targets that are not the user's last interaction", cases.user)
    note(cases.query == cases.target, "queries equal to their target", cases.user)
    hist = split.histories
    if len(hist) != n_cases:
        problems.append(f"{len(hist)} histories for {n_cases} cases")
    else:
        note(hist.lengths != od.lengths[k] - 1, "histories that are not all the user's items before the target",
             cases.user)
        if not problems:
            rows = _ranges(od.starts[k], od.lengths[k] - 1)
            owner = np.repeat(np.arange(n_cases), od.lengths[k] - 1)
            wrong = np.bincount(owner[od.item[rows] != hist.items], minlength=n_cases) > 0
            note(wrong, "histories that differ from the user's time-ordered items", cases.user)

    # Query precedes target: (user, query) occurs among the user's rows before the last one.
    before = od.lengths[k] - 1
    case_of = np.repeat(np.arange(n_cases, dtype=np.int64), before)
    hit = od.item[_ranges(od.starts[k], before)] == cases.query[case_of]
    query_ok = np.bincount(case_of[hit], minlength=n_cases) > 0
    note(~query_ok, "queries that are not an earlier interaction of the user", cases.user)

    # Held-out rows not in training: training rows of overlapped users must fit in their
    # non-target rows, counted as a multiset of (user, item, day).
    ov = np.flatnonzero(cases.overlapped)
    if len(ov) and not problems:
        a_pos = _ranges(od.starts[k[ov]], before[ov])
        a_user = np.repeat(cases.user[ov], before[ov])
        sorter = np.argsort(train.users, kind="stable")
        t = sorter[np.searchsorted(train.users, cases.user[ov], sorter=sorter)]
        t_len = train.offsets[t + 1] - train.offsets[t]
        b_pos = _ranges(train.offsets[t], t_len)
        b_user = np.repeat(cases.user[ov], t_len)
        excess = _multiset_excess(
            (
                np.r_[a_user, b_user],
                np.r_[od.item[a_pos], train.items[b_pos]],
                np.r_[od.day[a_pos], train.day[b_pos]],
            ),
            np.r_[np.ones(len(a_pos), np.int64), -np.ones(len(b_pos), np.int64)],
        )
        note(
            excess[0],
            "overlapped users whose held-out interaction (or an unknown row) is in training",
            excess[1],
        )
    if problems:
        raise LeakageError("split leakage: " + "; ".join(problems))


def _multiset_excess(cols: tuple[np.ndarray, ...], weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows (cols) whose weights sum below zero; returns (mask, first column)."""
    if len(weight) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, np.int64)
    order = np.lexsort(tuple(reversed(cols)))
    sc = [c[order] for c in cols]
    change = np.zeros(len(order), dtype=bool)
    change[0] = True
    for c in sc:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    total = np.add.reduceat(weight[order], starts)
    return total < 0, sc[0][starts]


# --------------------------------------------------------------------------- save / load


def save_split(split: Split, path: Path) -> None:
    """Write the split as one uncompressed .npz (arrays + a JSON meta entry), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"split_version": SPLIT_VERSION, "manifest_hash": split.manifest_hash, "meta": split.meta}
    arrays = _named_arrays(split.train, split.cases, split.histories, split.item_train_count, split.item_head)
    arrays[_META_KEY] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_split(path: Path) -> Split:
    """Read a split written by :func:`save_split`; verify its version and content hash.

    A missing, truncated or altered file raises a one-line :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("split file not found", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(bytes(npz[_META_KEY]).decode())
            arrays = {name: npz[name] for name in _DTYPES}
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"split file is corrupt or truncated ({reason}); delete it to rebuild", path
        ) from None
    if header.get("split_version") != SPLIT_VERSION:
        raise DataError(
            f"split file has version {header.get('split_version')}, this code writes {SPLIT_VERSION}; rebuild it",
            path,
        )
    try:
        train = Sequences(**{f: arrays[f"train.{f}"] for f in _TRAIN_FIELDS})
        cases = TestCases(**{f: arrays[f"cases.{f}"] for f in _CASE_FIELDS})
        histories = Histories(offsets=arrays["histories.offsets"], items=arrays["histories.items"])
        meta = header["meta"]
        digest = compute_manifest_hash(
            train, cases, histories, arrays["item_train_count"], arrays["item_head"], meta["settings"]
        )
    except (KeyError, TypeError, ValueError, DataError) as exc:
        raise DataError(f"split file is malformed ({exc}); delete it to rebuild", path) from None
    if digest != header.get("manifest_hash"):
        raise DataError("split file content does not match its manifest hash; delete it to rebuild", path)
    return Split(
        train=train,
        cases=cases,
        histories=histories,
        item_train_count=arrays["item_train_count"],
        item_head=arrays["item_head"],
        manifest_hash=digest,
        meta=meta,
    )


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
