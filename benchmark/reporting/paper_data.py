"""What data a report is about, in one header line, and whether the paper's numbers belong beside ours.

Runs record ``dataset['paper_data']`` (``benchmark/data/paper_data.py``): the paper's XMarket, its
synthetic twin, or other data. Only the first two are compared with the papers: claims checked,
the paper's numbers in parentheses. Other data gets informational claims, no paper numbers and a
header line saying what it is. Records made before the check count as other data, except the
twin, which is known by its name.
"""

from __future__ import annotations

from collections.abc import Iterable

from benchmark.data.paper_data import OTHER, PAPER, TWIN


def kind(dataset: dict) -> str:
    """"paper", "twin" or "other" for one record's ``dataset`` section."""
    recorded = dataset.get("paper_data")
    if isinstance(recorded, dict) and recorded.get("kind") in (PAPER, TWIN, OTHER):
        return str(recorded["kind"])
    return TWIN if dataset.get("synthetic") and dataset.get("name") == "xmarket-sim" else OTHER


def what(dataset: dict) -> str:
    """One line saying what the data is."""
    recorded = dataset.get("paper_data")
    if isinstance(recorded, dict) and recorded.get("what"):
        return str(recorded["what"])
    if kind(dataset) == TWIN:
        return "the SYNTHETIC XMarket twin (xmarket-sim)"
    return (f"{dataset.get('label') or dataset.get('name', '?')}, run before the paper-data check "
            "(datasets/xmarket.yaml), so not known to be the paper's XMarket")


def on_paper_data(datasets: Iterable[dict]) -> bool:
    """True when every record is on the paper's XMarket or its twin: claims and paper numbers apply."""
    kinds = [kind(d) for d in datasets]
    return bool(kinds) and all(k in (PAPER, TWIN) for k in kinds)


def header_lines(datasets: Iterable[dict]) -> list[str]:
    """The report's "Data:" line(s): what the data is and, off the paper's data, what that means."""
    datasets = list(datasets)
    seen = list(dict.fromkeys(what(d) for d in datasets))
    lines = [f"Data: {w}." for w in seen]
    if not on_paper_data(datasets):
        lines.append("Not the paper's XMarket: the papers' claims below are informational and the paper's numbers "
                     "are not printed beside ours.")
    return [*lines, ""]
