"""Which published layout a data folder holds, and the one loader for each.

``--dataset <dir>`` and ``--dataset xmarket --data-dir <dir>`` both come here, so they accept the
same layouts (each with a card in ``datasets/``):

- ``xmarket``: XMarket's raw download, ``<market>/<Category>/ratings_<market>_<Category>.txt.gz``
  (+ ``metadata_*.json.gz``), or the same files flat;
- ``xmarket-5core``: the cross-market 5-core files, ``<market>_5core.txt`` flat or under
  ``<market>/<Category>/``;
- ``wsdm-cup-2022``: the WSDM Cup 2022 files, ``s1_5core.tsv``, ``s2.tsv``, ... ``t2.tsv`` or the
  starter kit's ``<market>/train.tsv`` (+ ``train_5core.tsv``, ``valid_qrel.tsv``);
- ``recbole``: RecBole atomic files ``<name>.inter`` (+ ``.item``).

A folder holding none of them is one error that lists these layouts and says which card to write
for anything else.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.model import Dataset
from benchmark.data.recbole_source import load_recbole
from benchmark.data.wsdm import find_markets, load_wsdm
from benchmark.data.xmarket import DEFAULT_DOMAINS, MARKETS, check_domains, load_xmarket, parse_domains
from benchmark.data.xmarket_5core import find_5core, load_5core
from benchmark.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_RAW = re.compile(r"^ratings_([a-z]{2})_(\w+)\.txt\.gz$")


@dataclass(frozen=True)
class Layout:
    name: str
    what: str
    files: str
    card: str


LAYOUTS = (
    Layout("xmarket", "XMarket raw download", "<market>/<Category>/ratings_<market>_<Category>.txt.gz "
           "(+ metadata_*.json.gz), nested or flat", "datasets/xmarket.yaml"),
    Layout("xmarket-5core", "XMarket cross-market 5-core files", "<market>_5core.txt (header 'userId itemId rate "
           "[date]'), flat or under <market>/<Category>/", "datasets/xmarket-5core.yaml"),
    Layout("wsdm-cup-2022", "WSDM Cup 2022 cross-market files", "s1_5core.tsv, s2.tsv, ..., t2.tsv or "
           "<market>/train.tsv (+ train_5core.tsv, valid_qrel.tsv), header 'userId itemId rating'",
           "datasets/wsdm-cup-2022.yaml"),
    Layout("recbole", "RecBole atomic files", "<name>.inter (+ <name>.item)", "datasets/recbole-ml-100k.yaml"),
)
CROSS_MARKET = ("xmarket-5core", "wsdm-cup-2022")


def raw_domains(root: Path) -> list[tuple[str, str]]:
    """(market, Category) of every raw ratings file under ``root`` (nested or flat), in path order."""
    root = Path(root)
    found = [p for p in sorted(root.glob("*/*/ratings_*.txt.gz")) + sorted(root.glob("ratings_*.txt.gz"))]
    out = []
    for p in found:
        m = _RAW.match(p.name)
        if m and m.group(1) in MARKETS and (m.group(1), m.group(2)) not in out:
            out.append((m.group(1), m.group(2)))
    return out


def detect(root: Path) -> str | None:
    """The layout of ``root`` (a :data:`LAYOUTS` name) or None; raw XMarket first when several are there."""
    root = Path(root)
    if not root.is_dir():
        return None
    present = [name for name, there in (("xmarket", bool(raw_domains(root))), ("xmarket-5core", bool(find_5core(root))),
                                        ("wsdm-cup-2022", bool(find_markets(root))),
                                        ("recbole", any(root.glob("*.inter")))) if there]
    if len(present) > 1:
        log.warning("%s holds files of several layouts (%s); reading the %s files", root, ", ".join(present), present[0])
    return present[0] if present else None


def no_layout_error(root: Path) -> DataError:
    """The one error for a folder whose layout no loader knows: the layouts there are, and the way out."""
    known = "; ".join(f"{lay.what} ({lay.files}; card {lay.card})" for lay in LAYOUTS)
    return DataError(f"no known dataset layout here. Known layouts: {known}. For other interaction files write a "
                     "csv card (format: csv, file, columns: {user, item, rating, time}; see datasets/csv-tiny.yaml) "
                     "and pass --dataset <card>.yaml", root)


def load_dir(root: Path, domains: str | None = None, progress: bool = True, suite_default: bool = False) -> Dataset:
    """Load the folder ``root`` with the loader of its layout.

    ``domains`` keeps those domains (``us/Books`` for the raw layout, markets for the others).
    ``suite_default``: ``domains`` is the XMarket suites' default list, not the user's choice, so a
    cross-market layout without those domains keeps all of its own (said in one line).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("data directory does not exist", root)
    layout = detect(root)
    if layout is None:
        raise no_layout_error(root)
    if layout == "xmarket":
        return load_xmarket(root, _raw_domains(root, domains), cache_dir=None, progress=progress, name="xmarket")
    if layout == "recbole":
        return load_recbole(str(root), data_dir=root.parent, domain_field=None, progress=progress)
    labels = list(find_5core(root) if layout == "xmarket-5core" else find_markets(root))
    if suite_default and domains and _is_default(domains) and not set(_labels(domains)) & set(labels):
        log.info("%s: %s files; the XMarket suites' default domains are not among its domains, so all are kept: %s",
                 root, layout, ", ".join(labels))
        domains = None
    return load_5core(root, domains) if layout == "xmarket-5core" else load_wsdm(root, domains)


def _is_default(domains: str) -> bool:
    """True for the XMarket suites' default domain list (the user did not choose these)."""
    try:
        return parse_domains(domains) == DEFAULT_DOMAINS
    except ConfigError:
        return False


def _labels(domains: str) -> list[str]:
    return [p.strip() for p in str(domains).split(",") if p.strip()]


def _raw_domains(root: Path, domains: str | None) -> tuple[tuple[str, str], ...]:
    """The raw domains to read: those asked for; else the paper's three when all are there, else all there."""
    if domains:
        return parse_domains(domains)
    there = raw_domains(root)
    if all(d in there for d in DEFAULT_DOMAINS):
        return DEFAULT_DOMAINS
    try:
        doms = check_domains(there)
    except ConfigError as exc:
        raise DataError(f"raw XMarket file names outside XMarket's markets and categories ({exc})", root) from None
    log.info("%s: the paper's domains (%s) are not all here; reading the domains that are: %s", root,
             ", ".join("/".join(d) for d in DEFAULT_DOMAINS), ", ".join("/".join(d) for d in doms))
    return doms
