"""CTR examples for the ranking task (UniEmbedding 5.3), built from the matching split.

Positives are the items of a user's mixed-domain sequence, each the target after its history;
each positive gets ``negatives`` (5 in the paper) random items of the target's domain that the
user never interacted with, seeded. Features: the user's history items (most recent
``max_history``) and their domains, the target item and its domain.

Who gives what (no test user's interaction trains anything):
- train: every position t >= 1 of the training users' sequences, minus the validation carve-out
  (``benchmark.data.validation.carve_validation``, the one carve-out helper);
- validation: the carved users' held-out last items, after the rest of their sequence;
- test: the split's test cases (``split.cases`` target after ``split.histories``), i.e. the
  overlapped users' held-out last items and the unseen users' last items.
Negatives of training users avoid their whole training sequence; those of a test case avoid its
history and target. Items never seen in a training row get the padding/unknown ID row (their
pretrained vector, when a method gives one, is still used), as in a deployed system.

Every cell of a grid trains on this one dataset, so every row of Table 4 (w/o Emb. included) sees
the same training positives: all of them unless ``max_train_positives`` keeps a seeded sample,
which ``describe`` states as a fraction (``train_positives`` of ``train_positives_all``).
``item_head`` carries the split's head/tail item labels (top 50% of items by training frequency)
for the head/tail AUC.

Item indices are shifted by one (0 = padding) in every array here. The dataset is cached under
``<data-dir>/.cache/ctr/`` by (split manifest, settings) and carries a content hash that every
ranking run logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.model import Histories, Sequences, Split, TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError, DataError
from benchmark.fsutil import atomic_write

log = logging.getLogger(__name__)

CTR_VERSION = 2
"""Bump when the construction changes (part of the cache key and of the content hash).

2: ``item_head`` and ``train_positives_all`` (the head/tail AUC and the stated training fraction)."""

_MAX_REDRAWS = 200
_PART_FIELDS = ("history", "positive", "target", "label", "overlapped")


@dataclass(frozen=True, eq=False)
class CTRPart:
    """One part (train / valid / test): ``P`` positives with their histories, ``R`` labelled rows.

    ``history[p]`` is positive p's history (item index + 1, 0 = padding, oldest first, the last
    ``max_history`` items); row r scores ``target[r]`` against ``history[positive[r]]``.
    """

    history: np.ndarray  # int32 [P, L]
    positive: np.ndarray  # int32 [R]
    target: np.ndarray  # int32 [R], item index + 1
    label: np.ndarray  # float32 [R], 1 = the user's item, 0 = sampled negative
    overlapped: np.ndarray  # bool [P]; test part: case of an overlapped user (else False)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def n_positives(self) -> int:
        return len(self.history)

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the part's examples: equal fingerprints = the same labelled rows and histories."""
        h = hashlib.sha256()
        for name in _PART_FIELDS:
            arr = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class CTRData:
    """The three parts plus what the models need to know about items."""

    train: CTRPart
    valid: CTRPart
    test: CTRPart
    item_domain: np.ndarray  # int16 [N]
    domains: tuple[str, ...]
    known: np.ndarray  # bool [N]: item occurs in a training row (gets a learned ID row)
    item_head: np.ndarray  # bool [N]: the split's head items (top 50% by training frequency)
    train_positives_all: int  # training positives before any max_train_positives sample
    settings: dict
    hash: str  # content hash, logged with every run

    @property
    def n_items(self) -> int:
        return len(self.item_domain)

    def describe(self) -> dict:
        """Sizes and settings for run records and reports, with the share of training positives used."""
        return {"ctr_hash": self.hash, **self.settings,
                **{f"{name}_rows": len(part) for name, part in self.parts()},
                **{f"{name}_positives": part.n_positives for name, part in self.parts()},
                "train_positives_all": int(self.train_positives_all),
                "train_fraction": round(self.train.n_positives / max(int(self.train_positives_all), 1), 6),
                "train_set": self.train.fingerprint(),
                "known_items": int(self.known.sum()), "head_items": int(self.item_head.sum()), "n_items": self.n_items}

    def parts(self) -> list[tuple[str, CTRPart]]:
        return [("train", self.train), ("valid", self.valid), ("test", self.test)]


def _history_matrix(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Rows ``items[max(start, end - L):end] + 1``, left-aligned, zero-padded: int32 [n, L]."""
    lo = np.maximum(starts, ends - max_len)
    lengths = ends - lo
    col = np.arange(max_len)[None, :]
    keep = col < lengths[:, None]
    out = np.zeros((len(ends), max_len), dtype=np.int32)
    src = lo[:, None] + col
    out[keep] = items[src[keep]].astype(np.int32) + 1
    return out


def _sequence_positions(seqs: Sequences, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every position t >= 1 of every sequence: (history matrix, target item, sequence row)."""
    lengths = seqs.lengths
    owner = np.repeat(np.arange(len(seqs), dtype=np.int64), lengths)
    flat = np.arange(len(seqs.items), dtype=np.int64)
    first = seqs.offsets[:-1][owner]
    pos = flat[flat > first]
    own = owner[flat > first]
    hist = _history_matrix(seqs.items, seqs.offsets[:-1][own], pos, max_len)
    return hist, seqs.items[pos].astype(np.int64), own


def _history_rows(histories: Histories, max_len: int) -> np.ndarray:
    return _history_matrix(histories.items, histories.offsets[:-1], histories.offsets[1:], max_len)


def _keys(owner_offsets: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted unique ``owner * n_items + item`` of a CSR of per-owner item sets."""
    owner = np.repeat(np.arange(len(owner_offsets) - 1, dtype=np.int64), np.diff(owner_offsets))
    return np.unique(owner * n_items + items.astype(np.int64))


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    at = np.searchsorted(sorted_keys, keys).clip(max=len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def sample_negatives(target: np.ndarray, owner: np.ndarray, interacted: np.ndarray, item_domain: np.ndarray,
                     domains: tuple[str, ...], negatives: int, rng: np.random.Generator) -> np.ndarray:
    """``negatives`` distinct items per positive, of the target's domain, outside the owner's items.

    ``interacted`` is the sorted ``owner * n_items + item`` keys of each owner's items. Uniform
    over the domain's items, redrawing collisions; int64 [P, negatives].
    """
    n_items = len(item_domain)
    order = np.argsort(item_domain, kind="stable")
    counts = np.bincount(item_domain, minlength=len(domains))
    offsets = np.r_[0, np.cumsum(counts)]
    dom = item_domain[target].astype(np.int64)
    for d in np.unique(dom):
        if counts[d] < negatives + 1:
            raise DataError(f"ranking data: domain {domains[d]!r} has {counts[d]} item(s); {negatives} negatives "
                            f"per positive need at least {negatives + 1}")
    size = counts[dom][:, None]
    out = np.zeros((len(target), negatives), dtype=np.int64)
    todo = np.ones(out.shape, dtype=bool)
    for _ in range(_MAX_REDRAWS):
        rows, cols = np.nonzero(todo)
        if len(rows) == 0:
            return out
        draw = offsets[dom[rows]] + np.floor(rng.random(len(rows)) * size[rows, 0]).astype(np.int64)
        out[rows, cols] = order[draw]
        bad = _in_sorted(interacted, owner.astype(np.int64)[:, None] * n_items + out)
        bad |= out == target[:, None]
        for j in range(1, negatives):  # distinct within a positive's negatives
            bad[:, j] |= (out[:, :j] == out[:, j : j + 1]).any(axis=1)
        todo = bad
    rows = np.flatnonzero(todo.any(axis=1))
    worst = domains[int(dom[rows[0]])]
    raise DataError(f"ranking data: could not draw {negatives} distinct un-interacted items of domain {worst!r} "
                    f"for {len(rows)} positive(s); the domain has too few items the user has not interacted with")


def _part(history: np.ndarray, target: np.ndarray, owner: np.ndarray, interacted: np.ndarray,
          item_domain: np.ndarray, domains: tuple[str, ...], negatives: int, rng: np.random.Generator,
          overlapped: np.ndarray | None = None) -> CTRPart:
    neg = sample_negatives(target, owner, interacted, item_domain, domains, negatives, rng)
    p = len(target)
    items = np.concatenate([target[:, None], neg], axis=1)  # [P, 1 + negatives], positive first
    label = np.zeros(items.shape, dtype=np.float32)
    label[:, 0] = 1.0
    return CTRPart(history=history.astype(np.int32), positive=np.repeat(np.arange(p, dtype=np.int32), 1 + negatives),
                   target=(items.reshape(-1) + 1).astype(np.int32), label=label.reshape(-1),
                   overlapped=np.zeros(p, bool) if overlapped is None else overlapped.astype(bool))


def _content_hash(parts: dict[str, np.ndarray], settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted(parts):
        arr = np.ascontiguousarray(parts[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def build_ctr(split: Split, train: TrainView, *, negatives: int = 5, max_history: int = 20,
              validation_fraction: float = 0.1, max_validation: int | None = None,
              max_train_positives: int | None = None, seed: int = 0) -> CTRData:
    """The CTR dataset of the ranking task from the matching split (module docstring).

    ``max_train_positives`` keeps a seeded random subset of the training positives (a recorded
    scale-down for small CPU budgets; None = all).
    """
    if negatives < 1 or max_history < 1:
        raise ConfigError(f"ranking data: negatives ({negatives}) and max_history ({max_history}) must be >= 1")
    n_items, domains, item_domain = train.n_items, train.domains, np.asarray(train.item_domain)
    carve = carve_validation(train, validation_fraction, seed, max_validation)
    seqs = train.sequences
    train_keys = _keys(seqs.offsets, seqs.items, n_items)  # a training user's whole training sequence
    rng = np.random.default_rng([int(seed), 0xC7A])

    hist, target, owner = _sequence_positions(carve.fit.sequences, max_history)
    n_all = len(target)
    if max_train_positives is not None and len(target) > int(max_train_positives):
        keep = np.sort(rng.permutation(len(target))[: int(max_train_positives)])
        hist, target, owner = hist[keep], target[keep], owner[keep]
    train_part = _part(hist, target, owner, train_keys, item_domain, domains, negatives, rng)
    if len(carve) == 0:
        raise ConfigError("ranking data: the validation carve-out is empty (raise validation_fraction)")
    valid_part = _part(_history_rows(carve.histories, max_history), carve.targets.astype(np.int64),
                       carve.rows, train_keys, item_domain, domains, negatives, rng)
    cases, hists = split.cases, split.histories
    case_items = np.concatenate([hists.items, cases.target])
    case_owner = np.concatenate([np.repeat(np.arange(len(cases)), hists.lengths), np.arange(len(cases))])
    test_keys = np.unique(case_owner.astype(np.int64) * n_items + case_items.astype(np.int64))
    test_part = _part(_history_rows(hists, max_history), cases.target.astype(np.int64),
                      np.arange(len(cases)), test_keys, item_domain, domains, negatives, rng,
                      overlapped=np.asarray(cases.overlapped))

    known = np.zeros(n_items + 1, dtype=bool)
    known[train_part.target] = True
    known[train_part.history.reshape(-1)] = True
    settings = {"version": CTR_VERSION, "manifest_hash": split.manifest_hash, "negatives": int(negatives),
                "max_history": int(max_history), "validation_fraction": float(validation_fraction),
                "max_validation": max_validation, "max_train_positives": max_train_positives, "seed": int(seed)}
    item_head = np.asarray(split.item_head, dtype=bool)
    arrays = _arrays(train_part, valid_part, test_part, item_head=item_head, n_all=n_all)
    return CTRData(train=train_part, valid=valid_part, test=test_part, item_domain=item_domain.astype(np.int16),
                   domains=tuple(domains), known=known[1:], item_head=item_head, train_positives_all=n_all,
                   settings=settings, hash=_content_hash(arrays, settings))


def _arrays(*parts: CTRPart, item_head: np.ndarray, n_all: int) -> dict[str, np.ndarray]:
    out = {"item_head": np.asarray(item_head, dtype=bool), "train_positives_all": np.array([n_all], dtype=np.int64)}
    for name, part in zip(("train", "valid", "test"), parts, strict=True):
        for f in _PART_FIELDS:
            out[f"{name}.{f}"] = getattr(part, f)
    return out


def _read_cache(path: Path) -> CTRData | None:
    """A cached dataset, or None when its content does not match its recorded hash."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        parts = [CTRPart(**{f: z[f"{name}.{f}"] for f in _PART_FIELDS}) for name in ("train", "valid", "test")]
        n_all = int(z["train_positives_all"][0])
        data = CTRData(*parts, item_domain=z["item_domain"], domains=tuple(meta["domains"]), known=z["known"],
                       item_head=z["item_head"], train_positives_all=n_all, settings=meta["settings"],
                       hash=meta["hash"])
    if data.hash != _content_hash(_arrays(*parts, item_head=data.item_head, n_all=n_all), data.settings):
        return None
    return data


def cached_ctr(split: Split, train: TrainView, cache_dir: Path, **settings) -> CTRData:
    """``build_ctr`` through an on-disk cache keyed by (split manifest, settings, CTR_VERSION).

    A cache whose content does not match its hash, or that cannot be read, is rebuilt (never trusted).
    """
    key_src = json.dumps({"version": CTR_VERSION, "manifest": split.manifest_hash, **settings}, sort_keys=True)
    path = Path(cache_dir) / f"ctr-{hashlib.sha256(key_src.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            cached = _read_cache(path)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:  # truncated or foreign: rebuild it
            log.warning("%s: unreadable CTR cache (%s); rebuilding it", path, exc)
            cached = None
        if cached is not None:
            return cached
    data = build_ctr(split, train, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"domains": list(data.domains), "settings": data.settings, "hash": data.hash})
    atomic_write(path, lambda fh: np.savez(fh, __meta__=np.array(meta), item_domain=data.item_domain, known=data.known,
                                           **_arrays(data.train, data.valid, data.test, item_head=data.item_head,
                                                     n_all=data.train_positives_all)))
    return data
