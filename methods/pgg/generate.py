"""Steps 4-5 of PGG-lite (docs/methods.md 9.1): the generative I2I graph (GPBG stand-in) and its embedding.

PGG feeds the purified sets to GPBG, "an unsupervised I2I graph-structure-learning framework"
(He et al., KDD'21, abstract). The stand-in learns node embeddings h_i and context embeddings
h'_j with directed edge probability p(j | i) = softmax_j(h_i . h'_j), fitted to every ordered pair
of every purified set with skip-gram negative sampling (the "seed-and-expand" likelihood of a set
approximated by its pairs). An optional 2-hop term fits sampled paths i -> j -> k, a Monte-Carlo
surrogate of p(k | i) = sum_j p(j | i) p(k | j). The item embedding is n(h_i); the graph's top-K
neighbours are argmax_j h_i . h'_j.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F

from benchmark.plugin import RunContext
from methods.shared.kernels import standard_cpu_kernels
from methods.shared.mf import unigram_distribution
from methods.shared.training import EarlyStopping, TrainingBudget


def cooccurrence_graph(src: np.ndarray, dst: np.ndarray) -> nx.Graph:
    """The purified co-occurrence graph: undirected edge {i, j} weighted by its pair count."""
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    keys, counts = np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)
    graph = nx.Graph()
    graph.add_weighted_edges_from(zip(keys[:, 0].tolist(), keys[:, 1].tolist(), (counts // 2).tolist(),
                                      strict=True))
    return graph


def graph_statistics(graph: nx.Graph) -> dict[str, float]:
    """Nodes, edges, connected components, largest component share and degree statistics."""
    n = graph.number_of_nodes()
    if n == 0:
        return {"nodes": 0, "edges": 0, "components": 0, "largest_component_share": 0.0,
                "degree_mean": 0.0, "degree_median": 0.0, "degree_max": 0}
    degrees = np.fromiter((d for _, d in graph.degree()), dtype=np.int64, count=n)
    components = [len(c) for c in nx.connected_components(graph)]
    return {
        "nodes": n,
        "edges": graph.number_of_edges(),
        "components": len(components),
        "largest_component_share": max(components) / n,
        "degree_mean": float(degrees.mean()),
        "degree_median": float(np.median(degrees)),
        "degree_max": int(degrees.max()),
    }


def _sgns_loss(h: torch.Tensor, ctx_pos: torch.Tensor, ctx_neg: torch.Tensor, n_neg: int) -> torch.Tensor:
    """-log sigma(h . h'_pos) - sum_n log sigma(-h . h'_n), averaged over the batch.

    ``ctx_neg`` is either [B, n_neg, d] (own negatives per pair, word2vec) or [P, d], a pool shared
    by the batch; the pool's term is scaled by n_neg / P, an unbiased estimate of the same
    expectation n_neg * E_q[log sigma(-h . h'_n)] computed as one matrix product.
    """
    pos = F.logsigmoid((h * ctx_pos).sum(-1))
    if ctx_neg.dim() == 3:
        neg = F.logsigmoid(-torch.einsum("bd,bnd->bn", h, ctx_neg)).sum(-1)
    else:
        neg = F.logsigmoid(-(h @ ctx_neg.T)).sum(-1) * (n_neg / ctx_neg.shape[0])
    return -(pos + neg).mean()


def train_generative_graph(
    src: np.ndarray,
    dst: np.ndarray,
    n_items: int,
    cfg: dict[str, Any],
    seed: int = 0,
    ctx: RunContext | None = None,
    device: torch.device | str = "cpu",
    budget: TrainingBudget | None = None,
    validate: Callable[[np.ndarray], float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit h (node) and h' (context) embeddings to the ordered pairs (src -> dst) with SGNS.

    Negatives: ``cfg['negatives']`` per pair from the context unigram^0.75 distribution, drawn per
    pair, or (``cfg['negative_pool']`` > 0) as a pool of that size shared by the batch. The
    2-hop term (``cfg['two_hop_weight']`` > 0) adds, per pair (i, j), a pair (i, k) with k a
    random out-neighbour of j in the pair list. Sparse embeddings + SparseAdam. Returns
    (h, h') float32 [n_items, dim]; rows of items never a source are left at their init.
    ``device``: where the tables train; initialisation and sampling stay on the CPU generator.
    ``budget`` (optional) records optimizer steps, epochs and, as examples, the ordered pairs (the
    2-hop term's extra pairs are not counted). Without ``validate``: ``cfg['epochs']`` epochs
    (``max_epochs``). With it [proposal]: after each epoch ``validate(h)`` (h as numpy) scores the
    epoch, :class:`EarlyStopping` with ``cfg['patience']`` stops training (``converged``) and the
    best epoch's h, h' are returned; ``cfg['epochs']`` is then the safety cap.
    """
    device = torch.device(device)
    dim, epochs, batch = int(cfg["dim"]), int(cfg["epochs"]), int(cfg["batch_size"])
    n_neg, two_hop, pool = int(cfg["negatives"]), float(cfg["two_hop_weight"]), int(cfg["negative_pool"])
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 29)
    node = torch.nn.Embedding(n_items, dim, sparse=True)
    context = torch.nn.Embedding(n_items, dim, sparse=True)
    with torch.no_grad():  # word2vec's initialisation: small uniform inputs, zero outputs
        node.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=gen)
        context.weight.zero_()
    if len(src) == 0:
        return node.weight.detach().numpy().copy(), context.weight.detach().numpy().copy()
    node, context = node.to(device), context.to(device)
    opt = torch.optim.SparseAdam(list(node.parameters()) + list(context.parameters()), lr=float(cfg["lr"]))
    if budget is not None:
        budget.watch(opt)
    q = torch.from_numpy(unigram_distribution(dst, n_items, 0.75)).float()
    src_t, dst_t = torch.from_numpy(src).to(device), torch.from_numpy(dst).to(device)
    if two_hop > 0:  # CSR of out-neighbours, to sample j -> k
        order = np.argsort(src, kind="stable")
        nbr = torch.from_numpy(dst[order]).to(device)
        start = torch.from_numpy(np.searchsorted(src[order], np.arange(n_items))).to(device)
        deg = torch.from_numpy(np.bincount(src, minlength=n_items)).to(device)

    def draw(rows: int) -> torch.Tensor:
        if pool > 0:
            return torch.multinomial(q, pool, replacement=True, generator=gen).to(device)
        return torch.multinomial(q, rows * n_neg, replacement=True, generator=gen).view(rows, n_neg).to(device)

    stopper = None
    if validate is not None:
        stopper = EarlyStopping(int(cfg["patience"]), "pgg graph", ctx.logger if ctx is not None else None,
                                budget=budget)
    tables = torch.nn.ModuleDict({"node": node, "context": context})
    n = len(src)
    bar = ctx.progress(range(epochs), desc="pgg graph epochs", total=epochs) if ctx else range(epochs)
    with standard_cpu_kernels(device):
        for epoch in bar:
            perm = torch.randperm(n, generator=gen).to(device)
            total, seen = 0.0, 0
            for s in range(0, n, batch):
                idx = perm[s : s + batch]
                i, j = src_t[idx], dst_t[idx]
                h = node(i)
                negatives = context(draw(len(idx)))
                loss = _sgns_loss(h, context(j), negatives, n_neg)
                if two_hop > 0:
                    has = deg[j] > 0
                    pick = (torch.rand(len(idx), generator=gen).to(device) * deg[j].clamp_min(1)).long()
                    k = nbr[(start[j] + pick).clamp_max(n - 1)]
                    ok = has & (k != i)
                    if bool(ok.any()):
                        neg2 = negatives if pool > 0 else context(draw(int(ok.sum())))
                        loss = loss + two_hop * _sgns_loss(h[ok], context(k[ok]), neg2, n_neg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            if budget is not None:
                budget.saw(seen)
                budget.epoch_done(epoch)
            if ctx is not None:
                ctx.log_metric("pgg_loss", total / max(seen, 1), epoch)
            if stopper is None:
                continue
            score = float(validate(node.weight.detach().cpu().numpy()))
            if ctx is not None:
                ctx.log_metric("pgg_valid_ndcg10", score, epoch)
            if stopper.update(score, tables, epoch):
                break
    if stopper is not None:
        stopper.restore(tables)
    return node.weight.detach().cpu().numpy().copy(), context.weight.detach().cpu().numpy().copy()


def item_embedding(node: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """n(h_i) for items that were a source in some purified set; zero rows elsewhere (rank last)."""
    norms = np.linalg.norm(node, axis=1, keepdims=True)
    out = np.where(trained[:, None] & (norms > 0), node / np.maximum(norms, 1e-12), 0.0)
    return out.astype(np.float32)


def top_k_neighbours(node: np.ndarray, context: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """The generated graph's edges: the k items j != i with the largest p(j | i) (h_i . h'_j)."""
    scores = node[items] @ context.T
    scores[np.arange(len(items)), items] = -np.inf
    top = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1) - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
