"""The columnar, immutable data objects every stage shares.

Row = index everywhere: item ``i`` is row ``i`` of :class:`Items` and of every feature or
embedding matrix; user ``u`` is position ``u`` of ``Interactions.user_ids``. Arrays are
numpy and frozen (``writeable=False``) so a stage cannot mutate what another cached.
Paper-scale XMarket (~15M interactions, ~2.65M users) fits because nothing here is a
per-row Python object except item text, which is per item (~140k).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from benchmark.errors import DataError

NO_RATING = np.float32(np.nan)


def _freeze(obj: object) -> None:
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            value.setflags(write=False)


@dataclass(frozen=True, eq=False)
class Items:
    """Item table. ``domain[i]`` indexes ``domains``; text columns are ``None`` for ID-only data.

    ``source_id`` is the dataset's own id (the ASIN); an ASIN listed in two domains is two items
    (docs/protocol.md 1.4 step 1). ``image_url`` is '' where the item has no image; ``image_path`` is
    the local file once images were fetched ('' = missing).
    """

    domains: tuple[str, ...]
    source_id: np.ndarray  # object[str] [N]
    domain: np.ndarray  # int16 [N]
    title: np.ndarray | None = None  # object[str] [N]
    categories: np.ndarray | None = None  # object[tuple[str, ...]] [N]
    description: np.ndarray | None = None  # object[str] [N]
    features: np.ndarray | None = None  # object[str] [N], bullet points joined by " "
    image_url: np.ndarray | None = None  # object[str] [N]
    image_path: np.ndarray | None = None  # object[str] [N]
    price: np.ndarray | None = None  # float32 [N], nan = missing
    avg_rating: np.ndarray | None = None  # float32 [N], nan = missing

    def __post_init__(self) -> None:
        n = len(self.source_id)
        if self.domain.shape != (n,):
            raise DataError(f"items: domain has shape {self.domain.shape}, expected ({n},)")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and len(value) != n:
                raise DataError(f"items: column {f.name!r} has {len(value)} rows, expected {n}")
        _freeze(self)

    def __len__(self) -> int:
        return len(self.source_id)

    @property
    def has_content(self) -> bool:
        """True when metadata (title etc.) was loaded; ID-only datasets return False."""
        return self.title is not None

    @property
    def has_images(self) -> bool:
        return self.image_path is not None and bool(np.any(self.image_path != ""))


@dataclass(frozen=True, eq=False)
class Interactions:
    """All kept interactions, one row each, in the dataset's original line order.

    ``day`` is days since 1970-01-01 (XMarket dates are day-granular); ``line`` is the global
    original order (file order across domains) used to break same-day ties deterministically.
    """

    user: np.ndarray  # int32 [M], index into user_ids
    item: np.ndarray  # int32 [M], index into Items
    day: np.ndarray  # int32 [M]
    rating: np.ndarray  # float32 [M], nan where the source has none
    line: np.ndarray  # int64 [M]
    user_ids: np.ndarray  # bytes or object [U], the source's user ids

    def __post_init__(self) -> None:
        m = len(self.user)
        for name in ("item", "day", "rating", "line"):
            if len(getattr(self, name)) != m:
                raise DataError(f"interactions: column {name!r} length differs from 'user'")
        _freeze(self)

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: items + interactions + provenance (synthetic is never dropped)."""

    name: str
    items: Items
    interactions: Interactions
    synthetic: bool
    fingerprint: str  # hash of the raw inputs, for caches and run keys
    meta: dict = field(default_factory=dict)  # loader notes: dropped rows, collisions, ...


@dataclass(frozen=True, eq=False)
class Sequences:
    """CSR of time-ordered, mixed-domain user sequences: user k owns rows offsets[k]:offsets[k+1]."""

    users: np.ndarray  # int32 [K], user index (into Interactions.user_ids)
    offsets: np.ndarray  # int64 [K+1]
    items: np.ndarray  # int32 [nnz]
    day: np.ndarray  # int32 [nnz]
    rating: np.ndarray  # float32 [nnz]

    def __post_init__(self) -> None:
        _freeze(self)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, k: int) -> np.ndarray:
        return self.items[self.offsets[k] : self.offsets[k + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(len(self.users)):
            yield self.sequence(k)


@dataclass(frozen=True, eq=False)
class TestCases:
    """One row per test case: query item -> held-out target item, with its group labels."""

    user: np.ndarray  # int32 [C]
    query: np.ndarray  # int32 [C]
    target: np.ndarray  # int32 [C]
    overlapped: np.ndarray  # bool [C]; False = unseen user
    target_head: np.ndarray  # bool [C]; head = top 50% items by training frequency
    target_domain: np.ndarray  # int16 [C]
    query_domain: np.ndarray  # int16 [C]
    target_cold: np.ndarray  # bool [C]; target never occurs in training
    query_cold: np.ndarray  # bool [C]

    def __post_init__(self) -> None:
        _freeze(self)

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True, eq=False)
class Histories:
    """CSR of item histories, one row per case: row ``c`` is ``items[offsets[c]:offsets[c+1]]``.

    For a test case it is the user's whole mixed-domain, time-ordered sequence before the target
    (the input of the next-item protocol); for an unseen user none of it is training data.
    """

    offsets: np.ndarray  # int64 [C+1]
    items: np.ndarray  # int32 [nnz]

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.items) or np.any(np.diff(self.offsets) < 0):
            raise DataError("histories: offsets are not a valid CSR index into items")
        _freeze(self)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def history(self, c: int) -> np.ndarray:
        return self.items[self.offsets[c] : self.offsets[c + 1]]

    def subset(self, rows: np.ndarray) -> Histories:
        """The histories of ``rows`` (in that order), as a new CSR."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        flat = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return Histories(offsets=offsets, items=self.items[flat])

    def padded(self, max_len: int, pad: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """The last ``max_len`` items of each history, left-aligned: (int64 [C, L], lengths [C]).

        Position ``t`` holds the t-th of the kept items in time order and ``pad`` fills the rest,
        the layout of RecBole's SASRec (output read at position length-1).
        """
        lengths = np.minimum(self.lengths, max_len)
        out = np.full((len(self), max(int(max_len), 1)), pad, dtype=np.int64)
        col = np.arange(out.shape[1])[None, :]
        keep = col < lengths[:, None]
        src = (self.offsets[1:] - lengths)[:, None] + col
        out[keep] = self.items[src[keep]]
        return out, lengths.astype(np.int64)

    @classmethod
    def from_lists(cls, histories: Sequence[Sequence[int]]) -> Histories:
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        items = np.array([i for h in histories for i in h], dtype=np.int32)
        return cls(offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64), items=items)


@dataclass(frozen=True, eq=False)
class Split:
    """The split manifest (docs/protocol.md 0.2): training sequences + labelled test cases.

    ``histories`` (one row per case) feeds the next-item protocol of the sequence methods.

    ``manifest_hash`` is a content hash of everything here and is logged with every run.
    """

    train: Sequences
    cases: TestCases
    histories: Histories  # per case: the user's items before the target (next-item protocol)
    item_train_count: np.ndarray  # int64 [N]
    item_head: np.ndarray  # bool [N]
    manifest_hash: str
    meta: dict = field(default_factory=dict)  # construction notes, counts, settings

    def __post_init__(self) -> None:
        _freeze(self)


@dataclass(frozen=True, eq=False)
class TrainView:
    """What a method may see: training sequences and item attributes; never a test case."""

    sequences: Sequences
    items: Items
    item_train_count: np.ndarray  # int64 [N]

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def domains(self) -> tuple[str, ...]:
        return self.items.domains

    @property
    def item_domain(self) -> np.ndarray:
        return self.items.domain

    def single_domain_sequences(self) -> Sequences:
        """Each user's sequence cut into one sequence per domain (order kept within domain).

        The UniEmbedding 'w/o cross-domain' ablation (section 5.2.1) trains on these.
        """
        seqs = self.sequences
        owner = np.repeat(np.arange(len(seqs), dtype=np.int64), seqs.lengths)
        dom = self.items.domain[seqs.items].astype(np.int64)
        order = np.lexsort((np.arange(len(owner)), dom, owner))  # stable within (user, domain)
        key = owner[order] * (len(self.domains) + 1) + dom[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        offsets = np.r_[starts, len(key)].astype(np.int64)
        return Sequences(
            users=seqs.users[owner[order][starts]].astype(np.int32),
            offsets=offsets,
            items=seqs.items[order],
            day=seqs.day[order],
            rating=seqs.rating[order],
        )

    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]],
        item_domain: Sequence[int],
        domains: Sequence[str] = ("A", "B", "C"),
        ratings: Sequence[Sequence[float]] | None = None,
        items: Items | None = None,
    ) -> TrainView:
        """Build a view from plain lists, for tests and toy examples."""
        item_domain = np.asarray(item_domain, dtype=np.int16)
        n = len(item_domain)
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        flat = np.array([i for s in sequences for i in s], dtype=np.int32)
        rating = (
            np.array([r for rs in ratings for r in rs], dtype=np.float32)
            if ratings is not None
            else np.full(len(flat), np.nan, dtype=np.float32)
        )
        seqs = Sequences(
            users=np.arange(len(sequences), dtype=np.int32),
            offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            items=flat,
            day=np.concatenate([np.arange(k, dtype=np.int32) for k in lengths]) if len(flat) else flat,
            rating=rating,
        )
        if items is None:
            items = Items(
                domains=tuple(domains),
                source_id=np.array([f"item{i}" for i in range(n)], dtype=object),
                domain=item_domain,
            )
        counts = np.bincount(flat, minlength=n).astype(np.int64)
        return cls(sequences=seqs, items=items, item_train_count=counts)
