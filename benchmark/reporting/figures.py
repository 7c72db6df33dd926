"""Figures 6 and 7 of the UniEmbedding paper, from stored results (PNG + PDF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.reporting.results import MethodResult


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for path in paths:  # no creation dates: writing the same results twice leaves git clean
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
        fig.savefig(path, dpi=130, bbox_inches="tight", metadata=metadata)
    return paths


def figure6_head_tail(results: list[MethodResult], title: str, out: Path) -> list[Path]:
    """HR@50 on head vs tail target items, one pair of bars per method (paper Figure 6)."""
    plt = pyplot()
    done = [m for m in results if m.status == "done"]
    x = np.arange(len(done))
    head = [m.value("head", "HR@50") for m in done]
    tail = [m.value("tail", "HR@50") for m in done]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(done)), 3.6))
    ax.bar(x - 0.2, head, 0.4, label="head items (top 50% by training frequency)")
    ax.bar(x + 0.2, tail, 0.4, label="tail items")
    ax.set_xticks(x, [m.display for m in done], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("HR@50 (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths


def figure7_domains(results: list[MethodResult], domain_share: dict[str, float], title: str,
                    out: Path, reference: str = "uniembedding") -> list[Path] | None:
    """Per-domain relative HR@50 improvement of UniEmb over each baseline (lines) and each domain's
    share of interactions (bars), as in paper Figure 7. None when UniEmb was not run."""
    by_name = {m.method: m for m in results if m.status == "done"}
    ref = by_name.get(reference)
    if ref is None or not domain_share:
        return None
    plt = pyplot()
    domains = list(domain_share)
    x = np.arange(len(domains))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(domains)), 3.8))
    ax.bar(x, [100 * domain_share[d] for d in domains], 0.5, color="0.85", label="share of interactions (%)")
    ax.set_ylabel("share of interactions (%)")
    ax2 = ax.twinx()
    for m in results:
        if m.status != "done" or m.method == reference or m.paper_column is None or m.paper_column.startswith("UniEmb"):
            continue
        gains = []
        for d in domains:
            base = m.value(f"domain={d}", "HR@50")
            ours = ref.value(f"domain={d}", "HR@50")
            gains.append(100 * (ours - base) / base if base > 0 else np.nan)
        ax2.plot(x, gains, marker="o", label=f"vs {m.display}")
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_ylabel(f"relative HR@50 improvement of {ref.display} (%)")
    ax.set_xticks(x, domains, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths
