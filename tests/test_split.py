"""The split manifest follows methods.md 0.2 exactly, is deterministic and never leaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

import benchmark.data.split as split_module
from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.simulator import VERSION as SIM_VERSION
from benchmark.data.split import build_split, cached_split, head_mask, train_view
from benchmark.data.split_leakage import LeakageError, check_no_leakage
from benchmark.data.split_manifest import SPLIT_VERSION, compute_manifest_hash, load_split, save_split
from benchmark.errors import ConfigError, DataError

DOMAINS = ("Books", "Electronics", "Cell_Phones_and_Accessories")


def make_dataset(
    rows: list[tuple[int, int, int, int]], n_users: int, item_domain: list[int], name: str = "hand"
) -> Dataset:
    """rows = (user, item, day, line), in the order the arrays hold them."""
    user, item, day, line = (np.array(c) for c in zip(*rows, strict=True))
    items = Items(
        domains=DOMAINS,
        source_id=np.array([f"A{i:09d}" for i in range(len(item_domain))], dtype=object),
        domain=np.array(item_domain, dtype=np.int16),
    )
    inter = Interactions(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        day=day.astype(np.int32),
        rating=np.full(len(rows), 4.0, dtype=np.float32),
        line=line.astype(np.int64),
        user_ids=np.array([f"U{u}" for u in range(n_users)], dtype=object),
    )
    return Dataset(name=name, items=items, interactions=inter, synthetic=True, fingerprint=f"fp-{name}")


ITEM_DOMAIN = [0, 0, 1, 1, 2, 2]
# fmt: off
HAND_ROWS = [
    # u0: plain, cross-domain query (item 2, Electronics) -> target (item 4, Cell)
    (0, 0, 1, 0), (0, 2, 2, 1), (0, 4, 3, 2),
    # u1: same-day tie, arrays hold line 4 before line 3 -> line order decides: 1 then 3
    (1, 3, 5, 4), (1, 1, 5, 3),
    # u2: the item before the target repeats it -> query is the latest differing item (5)
    (2, 0, 1, 5), (2, 5, 2, 6), (2, 1, 3, 7), (2, 1, 4, 8),
    # u3: only repeats of one item -> no query, case dropped
    (3, 2, 1, 9), (3, 2, 2, 10),
    # u4: a single interaction -> user dropped by min_interactions
    (4, 3, 1, 11),
    # u5: file order differs from day order -> day decides: 0 (d2), 4 (d3), 5 (d9); same domain
    (5, 5, 9, 12), (5, 0, 2, 13), (5, 4, 3, 14),
]
# fmt: on
# (query, target) per user when it is a test user; u3 has none.
EXPECTED = {0: (2, 4), 1: (1, 3), 2: (5, 1), 5: (4, 5)}
# Each user's interactions in (day, line) order.
SEQ = {0: [0, 2, 4], 1: [1, 3], 2: [0, 5, 1, 1], 3: [2, 2], 5: [0, 4, 5]}


@pytest.fixture
def hand() -> Dataset:
    return make_dataset(HAND_ROWS, n_users=7, item_domain=ITEM_DOMAIN)  # u6 has no rows


def cases_by_user(split) -> dict[int, tuple[int, int, bool]]:
    c = split.cases
    return {
        int(u): (int(q), int(t), bool(o))
        for u, q, t, o in zip(c.user, c.query, c.target, c.overlapped, strict=True)
    }


def train_by_user(split) -> dict[int, list[int]]:
    s = split.train
    return {int(u): s.sequence(k).tolist() for k, u in enumerate(s.users)}


def test_all_overlapped_query_target_repeat_and_tie_rules(hand):
    split = build_split(hand, seed=0, test_user_frac=0.0, overlapped_frac=1.0)
    assert cases_by_user(split) == {u: (q, t, True) for u, (q, t) in EXPECTED.items()}
    # Overlapped users keep everything but the last interaction; the dropped u3 keeps all.
    assert train_by_user(split) == {0: [0, 2], 1: [1], 2: [0, 5, 1], 3: [2, 2], 5: [0, 4]}
    m = split.meta["counts"]
    assert (m["users_kept"], m["users_dropped"], m["dropped_cases"], m["overlapped_cases"]) == (5, 1, 1, 4)
    assert m["repeat_rule_cases"] == 1 and m["target_in_user_history_cases"] == 1  # u2 (u3 is dropped)
    assert m["cross_domain_cases"] == 3  # u0 (1->2), u1 (0->1), u2 (2->0); u5 stays in 2
    assert list(split.cases.query_domain) == [1, 0, 2, 2]
    assert list(split.cases.target_domain) == [2, 1, 0, 2]
    assert "latest earlier item that differs" in split.meta["construction"]


def test_train_sequences_carry_day_and_rating_in_order(hand):
    split = build_split(hand, test_user_frac=0.0, overlapped_frac=0.0)
    s = split.train
    assert train_by_user(split) == SEQ
    k = list(s.users).index(5)
    assert s.day[s.offsets[k] : s.offsets[k + 1]].tolist() == [2, 3, 9]
    assert np.all(s.rating == 4.0) and len(split.cases) == 0


def test_unseen_users_are_the_seeded_tenth_and_absent_from_training():
    rng = np.random.default_rng(7)
    rows, line = [], 0
    for u in range(40):
        for j in range(2 + u % 3):
            rows.append((u, int(rng.integers(6)), j, line))
            line += 1
    data = make_dataset(rows, n_users=40, item_domain=ITEM_DOMAIN)
    split = build_split(data, seed=3, test_user_frac=0.25, overlapped_frac=0.2)
    rng = np.random.default_rng(3)  # the construction stated in Split.meta
    unseen = set(rng.permutation(40)[:10].tolist())
    train_users = sorted(set(range(40)) - unseen)
    overlapped = {train_users[i] for i in rng.permutation(30)[:6]}
    m = split.meta["counts"]
    assert (m["unseen_users"], m["overlapped_users"], m["train_users"]) == (10, 6, 30)
    assert set(split.train.users.tolist()) == set(train_users)
    case_users = cases_by_user(split)
    assert {u for u, (_, _, o) in case_users.items() if not o} <= unseen
    assert {u for u, (_, _, o) in case_users.items() if o} <= overlapped
    assert len(case_users) + m["dropped_cases"] == 16


def reference_cases(data: Dataset, min_interactions: int = 2) -> dict[int, tuple[int, int] | None]:
    """Slow per-user reference of the query/target rule, for comparison."""
    inter = data.interactions
    out: dict[int, tuple[int, int] | None] = {}
    for u in np.unique(inter.user):
        rows = np.flatnonzero(inter.user == u)
        if len(rows) < min_interactions:
            continue
        rows = sorted(rows, key=lambda r: (inter.day[r], inter.line[r]))
        seq = [int(inter.item[r]) for r in rows]
        earlier = [i for i in seq[:-1] if i != seq[-1]]
        out[int(u)] = (earlier[-1], seq[-1]) if earlier else None
    return out


def test_vectorised_split_matches_a_per_user_reference():
    rng = np.random.default_rng(11)
    n_users, m = 300, 2000
    lines = rng.permutation(m)
    rows = [
        (int(rng.integers(n_users)), int(rng.integers(6)), int(rng.integers(5)), int(lines[r]))
        for r in range(m)
    ]
    data = make_dataset(rows, n_users=n_users, item_domain=ITEM_DOMAIN)
    ref = reference_cases(data, 3)
    split = build_split(data, seed=5, test_user_frac=0.0, overlapped_frac=1.0, min_interactions=3)
    got = cases_by_user(split)
    assert {u: (q, t) for u, (q, t, _) in got.items()} == {u: qt for u, qt in ref.items() if qt is not None}
    assert split.meta["counts"]["dropped_cases"] == sum(qt is None for qt in ref.values())
    split = build_split(data, seed=5, min_interactions=3)
    check_no_leakage(split, data)
    c = split.meta["counts"]
    assert c["train_interactions"] == sum(len(s) for s in split.train) == int(split.item_train_count.sum())


def test_determinism_and_hash(hand):
    a, b = build_split(hand, seed=1, test_user_frac=0.2), build_split(hand, seed=1, test_user_frac=0.2)
    assert a.manifest_hash == b.manifest_hash and len(a.manifest_hash) == 64
    assert a.meta == b.meta
    others = {build_split(hand, seed=s, test_user_frac=0.2).manifest_hash for s in range(2, 6)}
    assert a.manifest_hash not in others
    assert build_split(hand, seed=1, test_user_frac=0.2, overlapped_frac=0.3).manifest_hash != a.manifest_hash


def test_hash_ignores_byte_order_and_memory_layout(hand):
    split = build_split(hand, seed=2)
    swapped = dataclasses.replace(
        split.train, items=split.train.items.astype(">i4"), offsets=split.train.offsets.astype(">i8")
    )
    again = compute_manifest_hash(
        swapped, split.cases, split.histories, split.item_train_count.astype(">i8"), split.item_head,
        split.meta["settings"]
    )
    assert again == split.manifest_hash
    assert split.meta["split_version"] == SPLIT_VERSION


def test_head_tail_labels_top_half_with_index_ties_and_zero_counts_tail():
    assert head_mask(np.array([3, 1, 1, 0, 2, 1])).tolist() == [True, True, False, False, True, False]
    assert head_mask(np.array([0, 0, 0, 5])).tolist() == [False, False, False, True]
    assert head_mask(np.array([2, 2, 2])).tolist() == [True, False, False]


def test_split_head_labels_follow_training_counts(hand):
    split = build_split(hand, test_user_frac=0.0, overlapped_frac=1.0)
    # training items: u0 [0,2], u1 [1], u2 [0,5,1], u3 [2,2], u5 [0,4] -> counts; items 0 and 2 tie
    assert split.item_train_count.tolist() == [3, 2, 3, 0, 1, 1]
    assert split.item_head.tolist() == [True, True, True, False, False, False]
    assert split.item_head.tolist() == head_mask(split.item_train_count).tolist()
    by_user = dict(zip(split.cases.user.tolist(), split.cases.target_head.tolist(), strict=True))
    assert by_user == {0: False, 1: False, 2: True, 5: False}  # targets 4, 3, 1, 5
    cold = dict(zip(split.cases.user.tolist(), split.cases.target_cold.tolist(), strict=True))
    assert cold == {0: False, 1: True, 2: False, 5: False}
    assert split.meta["counts"]["cold_targets"] == 1


def test_leakage_check_fires_on_corrupted_splits(hand):
    split = build_split(hand, seed=0, test_user_frac=0.0, overlapped_frac=1.0)
    check_no_leakage(split, hand)
    t = split.train
    # 1) put u0's held-out target (item 4, day 3) back into its training sequence
    k = list(t.users).index(0)
    end = int(t.offsets[k + 1])
    leaked = dataclasses.replace(
        t,
        items=np.insert(t.items, end, 4),
        day=np.insert(t.day, end, 3),
        rating=np.insert(t.rating, end, 4.0),
        offsets=t.offsets + (np.arange(len(t.offsets)) > k),
    )
    with pytest.raises(LeakageError, match="held-out"):
        check_no_leakage(dataclasses.replace(split, train=leaked), hand)
    # 2) call an overlapped case unseen while its user trains
    c = split.cases
    unseen = dataclasses.replace(c, overlapped=np.zeros(len(c), dtype=bool))
    with pytest.raises(LeakageError, match="unseen test users with training"):
        check_no_leakage(dataclasses.replace(split, cases=unseen), hand)
    # 3) a query that is not an earlier interaction of the user (u0 never saw item 5)
    bad_query = dataclasses.replace(c, query=np.where(c.user == 0, 5, c.query).astype(np.int32))
    with pytest.raises(LeakageError, match="queries"):
        check_no_leakage(dataclasses.replace(split, cases=bad_query), hand)
    # 4) a target that is not the last interaction
    bad_target = dataclasses.replace(c, target=np.where(c.user == 0, 2, c.target).astype(np.int32))
    with pytest.raises(LeakageError):
        check_no_leakage(dataclasses.replace(split, cases=bad_target), hand)
    assert issubclass(LeakageError, AssertionError)


def test_save_load_round_trip_and_truncated_file(hand, tmp_path):
    split = build_split(hand, seed=4, test_user_frac=0.2, overlapped_frac=0.5)
    path = tmp_path / "s" / "split.npz"
    save_split(split, path)
    back = load_split(path)
    assert back.manifest_hash == split.manifest_hash and back.meta == split.meta
    for f in ("users", "offsets", "items", "day", "rating"):
        np.testing.assert_array_equal(getattr(back.train, f), getattr(split.train, f))
    for f in dataclasses.fields(split.cases):
        np.testing.assert_array_equal(getattr(back.cases, f.name), getattr(split.cases, f.name))
    assert [p.name for p in path.parent.iterdir()] == ["split.npz"]  # no temp file left
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.npz") as err:
        load_split(tmp_path / "cut.npz")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "missing.npz")


def test_altered_file_is_rejected(hand, tmp_path):
    split = build_split(hand, seed=4)
    path = tmp_path / "split.npz"
    save_split(dataclasses.replace(split, manifest_hash="0" * 64), path)
    with pytest.raises(DataError, match="manifest hash"):
        load_split(path)


def test_cached_split_reuses_and_keys_by_settings(hand, tmp_path):
    a = cached_split(hand, tmp_path, seed=1)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1
    b = cached_split(hand, tmp_path, seed=1)
    assert b.manifest_hash == a.manifest_hash and sorted(tmp_path.iterdir()) == files
    c = cached_split(hand, tmp_path, seed=1, overlapped_frac=0.5)
    assert c.manifest_hash != a.manifest_hash and len(list(tmp_path.iterdir())) == 2
    files[0].write_bytes(b"garbage")  # a corrupt cache entry is rebuilt, not trusted
    assert cached_split(hand, tmp_path, seed=1).manifest_hash == a.manifest_hash
    with pytest.raises(ConfigError, match="unknown"):
        cached_split(hand, tmp_path, seed=1, test_frac=0.2)


def test_train_view_and_settings_validation(hand):
    split = build_split(hand)
    view = train_view(hand, split)
    assert view.sequences is split.train and view.n_items == 6
    with pytest.raises(ConfigError):
        build_split(hand, test_user_frac=1.0)
    with pytest.raises(DataError, match="no user"):
        build_split(hand, min_interactions=10)


def test_build_split_runs_its_own_leakage_guard(hand, monkeypatch):
    """build_split must check what it built (a split that skipped the guard could ship a leak)."""
    seen = []

    def guard(split, ordered):
        seen.append(len(split.cases))
        raise LeakageError("planted: the guard ran")

    monkeypatch.setattr(split_module, "check_leakage", guard)
    with pytest.raises(LeakageError, match="planted"):
        build_split(hand, seed=0, test_user_frac=0.0, overlapped_frac=1.0)
    assert seen and seen[0] > 0


def test_twin_card_names_the_generator_version():
    """datasets/xmarket-sim.yaml states the generator version the code writes (the card is what users read)."""
    card = yaml.safe_load((Path(__file__).resolve().parents[1] / "datasets" / "xmarket-sim.yaml").read_text())
    assert card["generator"]["name"] == "xmarket-sim"
    assert card["generator"]["version"] == SIM_VERSION
