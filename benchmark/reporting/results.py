"""Read stored run records and aggregate them (mean over seeds) for tables, figures and claims."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from benchmark import registry
from benchmark.errors import BenchmarkError
from benchmark.grid.failures import read_failures
from benchmark.store.records import RunRecord, finished_records
from benchmark.tasks.matching.runner import failed_records

METRICS = ("HR@10", "HR@50", "MRR@10", "MRR@50", "NDCG@10", "NDCG@50")
#: The next-item table (the sequence methods' own protocol): cut-offs 10, 20, 50.
NEXT_ITEM_METRICS = tuple(f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in (10, 20, 50))
#: Table 1's column order in the paper; other methods follow by name.
PAPER_ORDER = ("CLIP", "UniSRec", "MISSRec", "VQRec", "Item2Vec", "PGG", "CB2CF", "UAE", "UniEmb_Text", "UniEmb")


@dataclass(frozen=True)
class ProposalColumn:
    """A column that is ours, not the paper's: its header carries ``suffix`` and the table a note."""

    beside: str | None  # the paper column it stands right after (None: with the other non-paper columns)
    suffix: str
    note: str


#: Our variants shown beside the paper's columns (registry name -> how they are labelled). Our
#: UniSRec and MISSRec columns are the inductive settings (item = content only; the paper does not
#: say which it ran, see their cards); the transductive twins add an item-ID table, which is what
#: "the twin favours IDs" has to be tested on.
PROPOSAL_COLUMNS = {
    "unisrec-transductive": ProposalColumn(
        "UniSRec", " (transductive) [proposal]",
        "UniSRec with transductive fine-tuning, item = n(MoE(x_i) + e_i^ID), the ID also in the sequence "
        "input (its authors' second setting); not a column of the paper's Table 1, which does not say its "
        "UniSRec's setting: our UniSRec column is the inductive one [proposal] (methods/unisrec/card.md)"),
    "missrec-transductive": ProposalColumn(
        "MISSRec", " (transductive) [proposal]",
        "MISSRec with transductive fine-tuning (item-ID embeddings added; its authors' default); not a column "
        "of the paper's Table 1, which does not say its MISSRec's setting: our MISSRec column is the inductive "
        "one [proposal] (methods/missrec/card.md)"),
    "uniembedding-earlier-view": ProposalColumn(
        None, " [proposal]",
        "UniEmb whose behaviour encoder reads only the earlier part of each window while anchors and positives "
        "come from the later part, so no positive is an encoder input (methods/uniembedding/card.md)"),
}


def paper_table(name: str) -> list[dict[str, str]]:
    """A table copied from the papers (benchmark/reporting/paper/<name>.csv)."""
    path = files("benchmark.reporting") / "paper" / f"{name}.csv"
    with path.open() as fh:
        return list(csv.DictReader(fh))


def paper_value(table: list[dict[str, str]], column: str, **where: str) -> float | None:
    for row in table:
        if all(row.get(k) == v for k, v in where.items()) and row.get(column) not in (None, ""):
            return float(row[column])
    return None


@dataclass
class MethodResult:
    """All seeds of one method in one suite, aggregated."""

    method: str
    display: str
    paper_column: str | None
    status: str
    reason: str
    records: list[RunRecord]

    def value(self, group: str, metric: str) -> float:
        vals = [r.metrics.get(group, {}).get(metric, np.nan) for r in self.records if r.status == "done"]
        return float(np.mean(vals)) if vals else float("nan")

    def std(self, group: str, metric: str) -> float:
        vals = [r.metrics.get(group, {}).get(metric, np.nan) for r in self.records if r.status == "done"]
        return float(np.std(vals)) if len(vals) > 1 else float("nan")

    @property
    def has_next_item(self) -> bool:
        """True when the method was also judged on the next-item protocol (it has a user encoder)."""
        return any(r.status == "done" and r.next_item_metrics for r in self.records)

    def next_value(self, group: str, metric: str) -> float:
        vals = [r.next_item_metrics.get(group, {}).get(metric, np.nan) for r in self.records
                if r.status == "done" and r.next_item_metrics]
        return float(np.mean(vals)) if vals else float("nan")

    def next_std(self, group: str, metric: str) -> float:
        vals = [r.next_item_metrics.get(group, {}).get(metric, np.nan) for r in self.records
                if r.status == "done" and r.next_item_metrics]
        return float(np.std(vals)) if len(vals) > 1 else float("nan")

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.records)


def load_records(results_dir: Path, suite: str, keys: set[str] | None = None, dataset: str | None = None,
                 scale: str | None = None) -> list[RunRecord]:
    """Records of a suite; without ``keys``, those on the newest run's manifest and scale.

    ``dataset`` / ``scale`` restrict the choice to runs on that dataset and size preset.
    """
    folder = results_dir / suite
    if not folder.is_dir():
        raise BenchmarkError(f"no results for suite {suite!r} under {results_dir} (run it first)")
    records = finished_records(folder, RunRecord)  # unreadable ones named in a warning and left out
    if dataset is not None:
        records = [r for r in records if r.dataset.get("name") == dataset]
    if scale is not None:
        records = [r for r in records if r.scale == scale]
    # failed runs (results/<suite>/.failed/) show as "failed: <reason>" columns until a rerun succeeds
    failed = failed_records(results_dir, suite, {f.key for f in read_failures(folder, keys)})
    failed = [r for r in failed if (dataset is None or r.dataset.get("name") == dataset)
              and (scale is None or r.scale == scale)]
    if keys is not None:
        records = [r for r in records if r.run_key in keys]
    elif records:
        newest = records[-1]
        records = [r for r in records if r.manifest_hash == newest.manifest_hash and r.scale == newest.scale]
        failed = [r for r in failed if r.manifest_hash == newest.manifest_hash and r.scale == newest.scale]
    have = {(r.method, r.seed) for r in records}
    records = [r for r in failed if (r.method, r.seed) not in have] + records
    if not records:
        raise BenchmarkError(f"no finished runs for suite {suite!r} under {folder}")
    latest: dict[tuple[str, int], RunRecord] = {}
    for record in records:  # oldest first, so the newest of a (method, seed) wins
        latest[(record.method, record.seed)] = record
    return list(latest.values())


def aggregate(records: list[RunRecord]) -> list[MethodResult]:
    by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_method[record.method].append(record)
    out = []
    for method, recs in by_method.items():
        done = [r for r in recs if r.status == "done"]
        failed = [r for r in recs if r.status == "failed"]
        first = (done or recs)[0]
        status = "done" if done else ("failed" if failed else "skipped")
        reason = "" if done else (failed or recs)[0].reason
        proposal = PROPOSAL_COLUMNS.get(method)
        display = (first.display if done else plain_name(method, first.display)) + (proposal.suffix if proposal else "")
        out.append(MethodResult(method=method, display=display, paper_column=first.paper_column,
                                status=status, reason=reason, records=recs))

    def order(m: MethodResult) -> tuple[int, int, str]:
        """Paper columns in the paper's order, each [proposal] twin right after its paper column, then the rest."""
        proposal = PROPOSAL_COLUMNS.get(m.method)
        col, beside = m.paper_column, proposal.beside if proposal else None
        if col in PAPER_ORDER:
            return (PAPER_ORDER.index(col), 0, m.method)
        if beside in PAPER_ORDER:
            return (PAPER_ORDER.index(beside), 1, m.method)
        return (len(PAPER_ORDER), 0, m.method)

    return sorted(out, key=order)


def plain_name(method: str, fallback: str | None = None) -> str:
    """A method's table name without run-dependent parts: a skipped CLIP run recorded "CLIP []" (no
    encoders), a skipped MISSRec "MISSRec[?, text only]"; tables name them "CLIP", "MISSRec"."""
    try:
        return registry.get_method(method).display_name or method
    except BenchmarkError:  # not installed here: the recorded name is all there is
        return fallback or method


def dataset_label(records: list[RunRecord]) -> str:
    labels = sorted({r.dataset.get("label", "?") for r in records})
    return "; ".join(labels)


def is_synthetic(records: list[RunRecord]) -> bool:
    return any(r.dataset.get("synthetic") for r in records)
