"""The transfer experiment of TransRec (seed 001 sections 3.4 and 4.2-4.4; claims C10, C11).

A suite with a ``transfer:`` section trains on source domains and evaluates on a target domain
of the same (mixed-domain) dataset, as TransRec's source -> target study on XMarket's layout:

- views: the split's training sequences cut per domain; the source view keeps the source
  domains' sequences, the target view the target domain's; ``source_fractions`` /
  ``target_fractions`` keep a seeded, nested share of those sequences (20 % is inside 50 %);
- test: the split's cases whose target item is in the target domain, with the history cut to
  its target-domain items (a target platform sees only its own items); cases with no such
  history are dropped. Next-item protocol over the target's items (full ranking, HR/NDCG@5,10)
  plus item-to-item from the last history item;
- conditions per seed: TransRec (stage 1 + 2 on the source, stage 2 on the target), TFS (stage 2
  on the target only, item encoders still pretrained), both also with frozen features
  (Table 9), TransRec at every source fraction (Table 7), both at every target fraction
  (Table 8), and the ID baselines trained on the full target view (Table 6).

Each condition's result (record + per-case ranks) is stored under
``results/<suite>/transfer/<key>/``, written atomically and skipped when present (resumable), then
logged to MLflow; ``benchmark/tasks/transfer/grid.py`` runs the grid (here, or as Ray tasks with ``--jobs``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import registry
from benchmark.config import RunConfig, load_suite_file
from benchmark.data.model import Histories, Sequences, TrainView
from benchmark.data.validation import ValidationCarve, carve_validation
from benchmark.errors import ConfigError
from benchmark.evaluation.breakdown import metrics_by_group
from benchmark.evaluation.exact import target_ranks
from benchmark.evaluation.metrics import HR, NDCG
from benchmark.evaluation.next_item import next_item_ranks
from benchmark.inputs import Inputs
from benchmark.plugin import RunContext

log = logging.getLogger(__name__)

TRANSFER_KEYS: dict[str, tuple[type, ...]] = {
    "source_domains": (list,), "target_domain": (str,), "source_fractions": (list,),
    "target_fractions": (list,), "id_baselines": (list,), "finetune_methods": (list,), "min_paired_cases": (int,),
    "min_seeds": (int,), "validation": (str,), "source_patience": (int,), "source_epochs": (int,),
    "references": (list,),
}
DEFAULTS = {"source_fractions": [1.0], "target_fractions": [1.0], "id_baselines": [], "finetune_methods": [],
            "references": [],
            "min_paired_cases": 20, "min_seeds": 3, "validation": "full"}
#: TransRec's and TFS's early stopping across data shares: "full" = every share validates on one
#: carve-out of its full view, every full-view epoch of steps; "share" = on its own, every own epoch
VALIDATION_RULES = ("full", "share")
#: TransRec's source stage 2 stopping rule, apart from its target stage's (absent = the method's
#: ``patience`` / ``epochs``): a condition's key holds them only when it pretrains TransRec on the
#: source, so TFS, the ID baselines and the fine-tuning methods keep their keys when they change.
SOURCE_STAGE_KEYS = ("source_patience", "source_epochs")
K_VALUES = (5, 10)


def _category(name: str) -> str:
    return str(name).rpartition("/")[2]


def validate_transfer(section: Any, domains: list[str]) -> dict[str, Any]:
    """Check a ``transfer:`` section against the suite's domains; ConfigError names the key."""
    if not isinstance(section, dict):
        raise ConfigError("transfer: expected a mapping")
    for key, value in section.items():
        if key not in TRANSFER_KEYS:
            raise ConfigError(f"transfer: unknown key {key!r}; allowed: {', '.join(TRANSFER_KEYS)}")
        if not isinstance(value, TRANSFER_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"transfer.{key}: expected {TRANSFER_KEYS[key][0].__name__}, got {value!r}")
    for key in ("source_domains", "target_domain"):
        if key not in section:
            raise ConfigError(f"transfer.{key} is required")
    cfg = {**copy.deepcopy(DEFAULTS), **section}
    known = [_category(d) for d in domains]
    sources = [_category(d) for d in cfg["source_domains"]]
    target = _category(cfg["target_domain"])
    for key, names in (("source_domains", sources), ("target_domain", [target])):
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"transfer.{key}: unknown domain(s) {bad}; known: {known}")
    if not sources:
        raise ConfigError("transfer.source_domains: needs at least one domain")
    if target in sources:
        raise ConfigError(f"transfer.target_domain {target!r} is also in transfer.source_domains")
    for key in ("source_fractions", "target_fractions"):
        values = cfg[key]
        if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1 for v in values):
            raise ConfigError(f"transfer.{key}: every fraction must lie in (0, 1], got {values!r}")
        if 1.0 not in [float(v) for v in values]:
            raise ConfigError(f"transfer.{key}: must include 1.0 (the full data of Table 6)")
    for key in SOURCE_STAGE_KEYS:
        if key in cfg and cfg[key] < 1:
            raise ConfigError(f"transfer.{key}: expected a count >= 1 (validations), got {cfg[key]!r}")
    if cfg["validation"] not in VALIDATION_RULES:
        raise ConfigError(f"transfer.validation: expected one of {', '.join(VALIDATION_RULES)}, got {cfg['validation']!r}")
    cfg.update(source_domains=sources, target_domain=target,
               source_fractions=sorted(float(v) for v in cfg["source_fractions"]),
               target_fractions=sorted(float(v) for v in cfg["target_fractions"]))
    return cfg


def is_transfer_suite(suite: str) -> bool:
    """True when the suite file has a ``transfer:`` section (run by this module, not the runner)."""
    return "transfer" in load_suite_file(registry.suite_path(suite))


# ----------------------------------------------------------------------------- views


def _subset_sequences(seqs: Sequences, rows: np.ndarray) -> Sequences:
    rows = np.asarray(rows, dtype=np.int64)
    lengths = seqs.lengths[rows]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    flat = np.repeat(seqs.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return Sequences(users=seqs.users[rows], offsets=offsets, items=seqs.items[flat], day=seqs.day[flat],
                     rating=seqs.rating[flat])


def domain_rows(train: TrainView, codes: list[int], fraction: float, seed: int, stream: int) -> np.ndarray:
    """Rows (of ``train.single_domain_sequences()``) of a seeded nested ``fraction`` of the ``codes``
    domains' sequences, sorted: the rows of 20 % are among those of 50 %, all among 100 %."""
    per_domain = train.single_domain_sequences()
    first = train.item_domain[per_domain.items[per_domain.offsets[:-1]]]
    rows = np.flatnonzero(np.isin(first, codes))
    order = np.random.default_rng([int(seed), int(stream), 0x7F]).permutation(len(rows))
    return np.sort(rows[order[: max(1, int(round(fraction * len(rows))))]])


def _view(train: TrainView, seqs: Sequences) -> TrainView:
    counts = np.bincount(seqs.items, minlength=train.n_items).astype(np.int64)
    return TrainView(sequences=seqs, items=train.items, item_train_count=counts)


def domain_view(train: TrainView, codes: list[int], fraction: float, seed: int, stream: int) -> TrainView:
    """The single-domain sequences of ``codes``, a seeded nested ``fraction`` of them."""
    keep = domain_rows(train, codes, fraction, seed, stream)
    return _view(train, _subset_sequences(train.single_domain_sequences(), keep))


class ShareViews:
    """One side of a seed (source or target): its full view, one validation carve-out of it, and shares.

    Every share trains on its part of the carve-out's ``fit`` and validates on the same cases (those
    of the full view), so a smaller share is not also judged on fewer, noisier validation cases
    (``validation: full``); the stage-2 epoch of ``full_fit()`` (the 100 % share) is the validation
    interval every share uses. ``validation: share`` keeps the rule before it: each share carves its
    own cases (``carve`` is None; the method carves from the share's view) and validates per epoch.
    """

    def __init__(self, train: TrainView, codes: list[int], seed: int, stream: int, fraction: float,
                 max_cases: int, fixed: bool) -> None:
        self.train, self.codes, self.seed, self.stream, self.fixed = train, codes, seed, stream, fixed
        self.rows = domain_rows(train, codes, 1.0, seed, stream)
        full = _view(train, _subset_sequences(train.single_domain_sequences(), self.rows))
        self.carve = carve_validation(full, fraction, seed, max_cases) if fixed else None

    def share(self, fraction: float) -> TrainView | ValidationCarve:
        """The share's training data: its part of the fixed carve-out (or, unfixed, its own view)."""
        if self.carve is None:
            return domain_view(self.train, self.codes, fraction, self.seed, self.stream)
        keep = np.searchsorted(self.rows, domain_rows(self.train, self.codes, fraction, self.seed, self.stream))
        return replace(self.carve, fit=_view(self.train, _subset_sequences(self.carve.fit.sequences, keep)))

    def full_fit(self) -> TrainView:
        """The 100 % share's training view (what sets the validation interval)."""
        share = self.share(1.0)
        return share.fit if isinstance(share, ValidationCarve) else share


@dataclass(frozen=True)
class TargetCases:
    """Target-domain test cases: local targets in the target pool, target-only histories."""

    pool: np.ndarray  # int64 [P] global item indices of the target domain
    rows: np.ndarray  # int64 [C] rows of the split's cases
    histories: Histories  # target-domain items only
    target: np.ndarray  # int64 [C] global target items
    overlapped: np.ndarray  # bool [C]

    def local(self, items: np.ndarray) -> np.ndarray:
        pos = np.full(int(self.pool.max()) + 1, -1, dtype=np.int64)
        pos[self.pool] = np.arange(len(self.pool))
        return pos[items]


def target_cases(inputs: Inputs, code: int) -> TargetCases:
    cases, hist, dom = inputs.split.cases, inputs.split.histories, inputs.train.item_domain
    rows = np.flatnonzero(cases.target_domain == code)
    sub = hist.subset(rows)
    keep_item = dom[sub.items] == code
    owner = np.repeat(np.arange(len(rows)), sub.lengths)
    lengths = np.bincount(owner[keep_item], minlength=len(rows))
    ok = lengths > 0
    kept_items = sub.items[keep_item]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    histories = Histories(offsets=offsets, items=kept_items.astype(np.int32)).subset(np.flatnonzero(ok))
    rows = rows[ok]
    return TargetCases(pool=np.flatnonzero(dom == code).astype(np.int64), rows=rows, histories=histories,
                       target=cases.target[rows].astype(np.int64), overlapped=cases.overlapped[rows].astype(bool))


# ----------------------------------------------------------------------------- evaluation


def evaluate(users: np.ndarray, candidates: np.ndarray, scoring: str, item_emb: np.ndarray,
             tc: TargetCases) -> tuple[np.ndarray, np.ndarray]:
    """(next-item ranks, item-to-item ranks) over the target pool, one per target case."""

    local_t = tc.local(tc.target)
    nxt = next_item_ranks(candidates[tc.pool], users, local_t, scoring=scoring)
    query = tc.histories.items[tc.histories.offsets[1:] - 1]
    i2i = target_ranks(item_emb[tc.pool], tc.local(query.astype(np.int64)), local_t)
    return nxt, i2i


def summarise(ranks: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """group -> {n, HR@K, NDCG@K (percent)}: the evaluator's per-group metrics at K_VALUES."""

    return metrics_by_group(ranks, groups, [metric(k) for k in K_VALUES for metric in (HR, NDCG)])


# ----------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Condition:
    """One cell of the transfer grid."""

    method: str  # transrec | tfs | an ID baseline's registry name
    seed: int
    source_fraction: float | None  # None = no source training
    target_fraction: float
    end_to_end: bool = True

    @property
    def label(self) -> str:
        src = "" if self.source_fraction is None else f" src {self.source_fraction:g}"
        return f"{self.method}{src} tgt {self.target_fraction:g}{'' if self.end_to_end else ' frozen'} s{self.seed}"


def conditions(cfg: dict[str, Any], seeds: list[int], methods: list[str]) -> list[Condition]:
    out: list[Condition] = []
    for seed in seeds:
        if "transrec" in methods:
            for tf in cfg["target_fractions"]:
                out.append(Condition("transrec", seed, 1.0, tf))
                out.append(Condition("tfs", seed, None, tf))
            out += [Condition("transrec", seed, sf, 1.0) for sf in cfg["source_fractions"] if sf < 1.0]
            out += [Condition("transrec", seed, 1.0, 1.0, False), Condition("tfs", seed, None, 1.0, False)]
        out += [Condition(m, seed, None, 1.0) for m in cfg["id_baselines"] if m in methods]
        # floors (Popularity), trained on the target like the ID baselines: the competence check's reference
        out += [Condition(m, seed, None, 1.0) for m in cfg["references"] if m in methods]
        # methods with their own pretrain -> fine-tune recipe: all the source, then all the target
        out += [Condition(m, seed, 1.0, 1.0) for m in cfg["finetune_methods"] if m in methods]
    return out


#: Transfer keys that only choose which conditions exist, not what any condition computes: left out of
#: the run key and of the "same grid" check, so listing another method keeps every finished condition.
GRID_ONLY_KEYS = ("finetune_methods", "references")
#: Why a listed fine-tuning method is not in the grid (the run's line and the report say the same).
NO_TRANSFER_RECIPE = ("no source -> target recipe in this plugin yet: Method.fit_transfer (pretrain on the source "
                      "view, fine-tune on the target view)")


def pretrains_transrec(cond: Condition | dict[str, Any]) -> bool:
    """Whether a condition trains TransRec's source stages (the ones ``SOURCE_STAGE_KEYS`` set)."""
    c = cond if isinstance(cond, dict) else cond.__dict__
    return c["method"] == "transrec" and c["source_fraction"] is not None


def condition_cfg(cfg: dict[str, Any], cond: Condition | dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of a transfer section a condition's result depends on (see GRID_ONLY_KEYS);
    ``SOURCE_STAGE_KEYS`` only for a condition that pretrains TransRec (none without ``cond``)."""
    source = cond is not None and pretrains_transrec(cond)
    return {k: v for k, v in cfg.items() if k not in GRID_ONLY_KEYS and (source or k not in SOURCE_STAGE_KEYS)}


def _key(cond: Condition, run: RunConfig, inputs: Inputs, cfg: dict[str, Any]) -> str:
    payload = json.dumps({"cond": cond.__dict__, "run": run.as_dict(), "transfer": condition_cfg(cfg, cond)},
                         sort_keys=True, default=str)
    payload += inputs.split.manifest_hash + inputs.dataset.fingerprint
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_condition(tmp: Path, record: Any, nxt: np.ndarray, i2i: np.ndarray, tracking: dict) -> None:
    """A condition's complete folder, into ``tmp`` (the engine renames it whole): per-case ranks,
    ``tracking.json``, then ``result.json`` (its TransferRecord)."""
    np.save(tmp / "next_item_ranks.npy", nxt.astype(np.int32))
    np.save(tmp / "ranks.npy", i2i.astype(np.int32))
    (tmp / "tracking.json").write_text(json.dumps(tracking, indent=1, default=str))
    record.write(tmp)


def share_cap(cap: int, share: float) -> int:
    """The per-epoch step cap of a data share: the preset's cap (set for 100 %) times the share, rounded up.

    A fixed cap that every share exceeds would train all shares on the same number of sequences
    per epoch (Table 7 / Table 8 would then measure nothing); scaled, each share's epoch covers the
    same fraction of its data, and a cap that lets 100 % train on all of it lets every share do so.
    """
    return max(1, math.ceil(round(int(cap) * float(share), 6)))


class _TransRecFamily:
    """One prepared TransRec per (seed, end_to_end), reset or loaded from a source state per condition.

    A source-pretrained state is kept with its stages' budgets and records, so every condition that
    starts from it reports the source steps it rests on, whichever condition trained them."""

    def __init__(self, inputs: Inputs, run: RunConfig, ctx: RunContext) -> None:
        self.inputs, self.run, self.ctx = inputs, run, ctx
        self.models: dict[bool, Any] = {}
        self.initial: dict[bool, dict] = {}
        self.pretrained: dict[tuple[bool, float], tuple[dict, list, list]] = {}

    def model(self, e2e: bool) -> Any:
        if e2e not in self.models:
            cls = registry.get_method("transrec")
            m = cls()
            cfg = {**self.run.method_config, "end_to_end": e2e}
            m.prepare(self.inputs.train, self.inputs.features, cfg, self.ctx)
            self.models[e2e], self.initial[e2e] = m, copy.deepcopy(m.net.state_dict())
        return self.models[e2e]

    def train(self, cond: Condition, source: ShareViews, target: ShareViews, src_pool: np.ndarray,
              tgt_pool: np.ndarray, fixed_validation: bool = True, source_rule: dict[str, int] | None = None) -> Any:
        """Train ``cond``'s model: source stages (or a kept source state), then stage 2 on the target share.

        With ``fixed_validation`` each side validates on its full view's cases every full-view
        epoch (``ShareViews``); else on the share's own cases every share epoch. ``source_rule``:
        the source stage 2's ``patience`` / ``epochs`` where the suite sets them (SOURCE_STAGE_KEYS)."""
        m = self.model(cond.end_to_end)
        m.stats["stages"] = []  # this condition's stages only
        src_cap = int(m.cfg["max_steps_per_epoch"])
        tgt_cap = int(m.cfg.get("target_max_steps_per_epoch") or src_cap)

        def every(side: ShareViews, cap: int) -> int | None:
            return m.stage2_steps_per_epoch(side.full_fit(), cap) if fixed_validation else None

        if cond.source_fraction is None:
            m.net.load_state_dict(self.initial[cond.end_to_end])
        else:
            key = (cond.end_to_end, cond.source_fraction)
            if key not in self.pretrained:
                m.net.load_state_dict(self.initial[cond.end_to_end])
                rule = source_rule or {}
                m.train_on(source.share(cond.source_fraction), self.ctx, stage1=True, pool=src_pool, tag="-source",
                           max_steps=share_cap(src_cap, cond.source_fraction), valid_every=every(source, src_cap),
                           patience=rule.get("patience"), epochs=rule.get("epochs"))
                self.pretrained[key] = (copy.deepcopy(m.net.state_dict()), copy.deepcopy(m._budgets),
                                        copy.deepcopy(m.stats["stages"]))
                m.stats["stages"] = copy.deepcopy(self.pretrained[key][2])
            else:  # trained for an earlier condition: the same state, steps and records, marked reused
                m.stats["stages"] = [{**st, "reused": True} for st in copy.deepcopy(self.pretrained[key][2])]
            m._budgets = copy.deepcopy(self.pretrained[key][1])
            m.net.load_state_dict(self.pretrained[key][0])
        # TFS "shares the same hyper-parameters as TransRec" [seed 4.2]: both train on the target at finetune_lr
        m.train_on(target.share(cond.target_fraction), self.ctx, stage1=False, pool=tgt_pool,
                   lr=float(m.cfg["finetune_lr"]), tag="-target", max_steps=share_cap(tgt_cap, cond.target_fraction),
                   valid_every=every(target, tgt_cap))
        m.finish()
        return m

