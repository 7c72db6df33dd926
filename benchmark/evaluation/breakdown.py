"""Metrics by test-case group, from the one per-case rank vector (docs/protocol.md 0.2 "Breakdowns").

Groups follow the UniEmbedding paper: overlapped vs unseen users (Table 1), head vs tail target
items, head = top 50% of items by training frequency (section 5.2.2, Figure 6), and the target's
domain (section 5.2.3, Figure 7); 'cold' counts targets never seen in training (docs/protocol.md 0.2:
ID-only methods give them zero vectors). Crossed groups split each user population further.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from benchmark.data.model import TestCases
from benchmark.evaluation.metrics import DEFAULT_METRICS, RankMetric

__all__ = ["group_masks", "grouped_metrics", "metrics_by_group"]


def group_masks(cases: TestCases, domains: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean mask per group name, in a fixed order.

    Names: 'all', 'overlapped', 'unseen', 'head', 'tail', 'cold', 'domain=<name>', then
    'overlapped/head', 'overlapped/tail', 'unseen/head', 'unseen/tail',
    'overlapped/domain=<name>', 'unseen/domain=<name>'. Domains are the target's domain;
    ``domains[k]`` names domain index k (``Items.domains``).
    """
    target_domain = np.asarray(cases.target_domain)
    if len(target_domain) and (target_domain.min() < 0 or target_domain.max() >= len(domains)):
        raise ValueError(f"target_domain holds an index outside the {len(domains)} domains given")
    overlapped = np.asarray(cases.overlapped, dtype=bool)
    head = np.asarray(cases.target_head, dtype=bool)
    users = {"overlapped": overlapped, "unseen": ~overlapped}
    popularity = {"head": head, "tail": ~head}
    by_domain = {f"domain={name}": target_domain == k for k, name in enumerate(domains)}

    masks: dict[str, np.ndarray] = {"all": np.ones(len(cases), dtype=bool)}
    masks |= users | popularity
    masks["cold"] = np.asarray(cases.target_cold, dtype=bool)
    masks |= by_domain
    for user_group, user_mask in users.items():
        for pop_group, pop_mask in popularity.items():
            masks[f"{user_group}/{pop_group}"] = user_mask & pop_mask
    for user_group, user_mask in users.items():
        for dom_group, dom_mask in by_domain.items():
            masks[f"{user_group}/{dom_group}"] = user_mask & dom_mask
    return masks


def grouped_metrics(
    ranks: np.ndarray,
    cases: TestCases,
    domains: Sequence[str],
    metrics: Iterable[RankMetric] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """``{group: {'n': case count, 'HR@10': percent, ...}}``; empty groups get n=0 and NaN."""
    ranks = np.asarray(ranks)
    if len(ranks) != len(cases):
        raise ValueError(f"{len(ranks)} ranks for {len(cases)} test cases")
    return metrics_by_group(ranks, group_masks(cases, domains), metrics)


def metrics_by_group(
    ranks: np.ndarray,
    masks: dict[str, np.ndarray],
    metrics: Iterable[RankMetric] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """``{group: {'n': case count, <metric key>: percent, ...}}`` for any boolean case masks.

    The one per-group summary: the breakdowns above and the transfer grid's groups both use it.
    Empty groups get n=0 and NaN.
    """
    ranks = np.asarray(ranks)
    values = {metric.key: metric(ranks) for metric in metrics}
    out: dict[str, dict[str, float]] = {}
    for group, mask in masks.items():
        n = int(mask.sum())
        row: dict[str, float] = {"n": n}
        for key, per_case in values.items():
            row[key] = float(100.0 * per_case[mask].mean()) if n else float("nan")
        out[group] = row
    return out
