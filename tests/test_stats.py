"""Dataset statistics on a hand-made dataset, and their printout beside the published figures."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.model import Dataset, Interactions, Items
from benchmark.data.split import build_split
from benchmark.data.stats import XMARKET_PUBLISHED, dataset_stats, format_stats

DOMAINS = ("Books", "Electronics", "Cell_Phones_and_Accessories")
# (user, item, day); items 0 and 3 are Books, 1 Electronics, 2 Cell phones
# fmt: off
ROWS = [
    (0, 0, 1), (0, 1, 2),  # two domains
    (1, 0, 1), (1, 3, 2),  # one domain
    (2, 0, 1), (2, 1, 2), (2, 2, 3),  # three domains
    (3, 2, 1),  # a single interaction: dropped by the split's min_interactions=2
    (4, 0, 1), (4, 0, 2),  # one domain, a repeat: no query, its case is dropped
]
# fmt: on


@pytest.fixture
def data() -> Dataset:
    user, item, day = (np.array(c) for c in zip(*ROWS, strict=True))
    items = Items(
        domains=DOMAINS,
        source_id=np.array(["a", "b", "c", "d"], dtype=object),
        domain=np.array([0, 1, 2, 0], dtype=np.int16),
        image_url=np.array(["http://x/a.jpg", "", "http://x/c.jpg", "http://x/d.jpg"], dtype=object),
    )
    inter = Interactions(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        day=day.astype(np.int32),
        rating=np.full(len(ROWS), np.nan, dtype=np.float32),
        line=np.arange(len(ROWS), dtype=np.int64),
        user_ids=np.array([f"U{u}" for u in range(5)], dtype=object),
    )
    return Dataset(name="toy", items=items, interactions=inter, synthetic=True, fingerprint="fp-toy")


def test_stats_without_split_use_all_users_and_all_interactions(data):
    s = dataset_stats(data)
    assert (s["users"], s["items"], s["interactions"]) == (5, 4, 10)
    assert s["domains_per_user_pct"] == pytest.approx({"1": 60.0, "2": 20.0, "3": 20.0})
    assert s["per_domain"]["Books"] == {
        "users": 4,
        "items": 2,
        "items_interacted": 2,
        "interactions": 6,
        "interaction_share_pct": 60.0,
    }
    assert s["per_domain"]["Cell_Phones_and_Accessories"]["users"] == 2
    # counts [5, 2, 2, 1]: head = items 0 and 1 (1 beats 2 on the index tie), tail = 2 and 3
    assert s["tail_share_pct"] == pytest.approx(30.0)
    assert s["mean_seq_len"] == pytest.approx(2.0)
    assert s["missing_image_pct"] == pytest.approx(25.0)
    assert "split" not in s


def test_stats_with_split_use_kept_users_and_training_tail(data):
    split = build_split(data, test_user_frac=0.0, overlapped_frac=1.0)
    s = dataset_stats(data, split)
    assert (s["users"], s["interactions"]) == (4, 9)
    assert s["domains_per_user_pct"] == pytest.approx({"1": 50.0, "2": 25.0, "3": 25.0})
    # training counts [5, 1, 0, 0] -> head {0, 1}; the population has 2 tail interactions of 9
    assert split.item_train_count.tolist() == [5, 1, 0, 0]
    assert s["tail_share_pct"] == pytest.approx(200 / 9)
    assert s["tail_share_train_pct"] == 0.0
    assert s["cold"] == {
        "items": 2,
        "target_cases": 2,
        "target_cases_pct": pytest.approx(200 / 3),
        "query_cases": 0,
    }
    assert (s["split"]["overlapped_cases"], s["split"]["unseen_cases"], s["split"]["dropped_cases"]) == (
        3,
        0,
        1,
    )


def test_format_puts_ours_beside_published_and_flags_synthetic(data):
    split = build_split(data, test_user_frac=0.0, overlapped_frac=1.0)
    text = format_stats(dataset_stats(data, split))
    first = text.splitlines()[0]
    assert "toy" in first and "SYNTHETIC" in first
    assert "ours" in text and "published" in text
    for figure in ("65.90 %", "30.35 %", "3.75 %", "10.90 %", "4,263,523", "2,424,733", "~2,650,000"):
        assert figure in text
    assert split.manifest_hash[:16] in text
    real = dataclasses.replace(data, synthetic=False)
    assert "SYNTHETIC" not in format_stats(dataset_stats(real), reference=None)


PAPER_README = Path(__file__).resolve().parents[2] / "shared" / "paper" / "README.md"


def test_published_reference_matches_the_paper_readme():
    """The figures are read from the paper notes (../shared/paper/README.md), not typed again."""
    if not PAPER_README.is_file():  # the notes sit beside the repository, not in it
        pytest.skip(f"{PAPER_README} not present")
    text = PAPER_README.read_text()
    one, two, three = re.search(r"([\d.]+)% one, ([\d.]+)% two, ([\d.]+)% three", text).groups()
    assert XMARKET_PUBLISHED["domains_per_user_pct"] == {"1": float(one), "2": float(two), "3": float(three)}
    tail = re.search(r"tail items carry ([\d.]+)% of interactions", text).group(1)
    assert XMARKET_PUBLISHED["tail_share_pct"] == float(tail)
    items, users = re.search(r"~([\d.]+) million items, ~([\d.]+) million users", text).groups()
    assert (XMARKET_PUBLISHED["items"], XMARKET_PUBLISHED["users"]) == (round(float(items) * 1e6),
                                                                        round(float(users) * 1e6))
    raw = XMARKET_PUBLISHED["per_domain_raw"]
    assert sum(d["interactions"] for d in raw.values()) == XMARKET_PUBLISHED["interactions_raw_total"]
