"""The dataset registry: a name -> a loaded :class:`Dataset`.

``xmarket`` (real files under DATA_DIR), ``xmarket-sim`` (the synthetic twin, generated on first
use, always labelled synthetic) and ``recbole:<name>`` (RecBole atomic files). Item images named
by the metadata are fetched into ``<dataset dir>/.cache/images`` so ``Items.image_path`` is set
(a data directory that cannot hold caches gets a writable one elsewhere: fsutil.cache_root).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmark.data import layouts
from benchmark.data.model import Dataset
from benchmark.data.paper_data import with_paper_data
from benchmark.errors import ConfigError, DataError, did_you_mean
from benchmark.fsutil import CACHE_DIR_ENV, cache_root

log = logging.getLogger(__name__)

_SUMMARIES = {
    "xmarket": "XMarket FULL files (US Books / Electronics / Cell_Phones_and_Accessories by default) "
    "under DATA_DIR or DATA_DIR/xmarket",
    "xmarket-sim": "synthetic XMarket twin in XMarket's raw formats (docs/twin.md); generated on first use; "
    "always labelled synthetic",
    "recbole:ml-100k": "MovieLens-100k as bundled with RecBole (offline; one domain, or --domains <item field>)",
    "recbole:<name>": "any RecBole atomic dataset: DATA_DIR/<name>/<name>.inter (+ .item), or a directory path",
    "csv:<path>": "a CSV/TSV of interactions (user, item[, rating][, timestamp]); or a csv card in datasets/",
    "xmarket:<dir>": "a folder in a known layout (benchmark/data/layouts.py): XMarket raw files, the cross-market "
    "5-core files, the WSDM Cup 2022 files or RecBole atomic files; --dataset <dir> does the same",
    "xmarket-5core": "the cross-market 5-core files (<market>_5core.txt) under DATA_DIR/xmarket-5core or DATA_DIR",
    "wsdm-cup-2022": "the WSDM Cup 2022 files (s1_5core.tsv, ..., t2.tsv or <market>/train.tsv) under "
    "DATA_DIR/wsdm-cup-2022 or DATA_DIR",
}


def list_datasets() -> list[tuple[str, str]]:
    """(name, one-line summary) for every dataset the suite can load."""
    return list(_SUMMARIES.items())


def sim_dir(data_dir: Path, scale: str, seed: int) -> Path:
    """Where the twin of (scale, seed) lives: ``data_dir/xmarket-sim/<scale>-seed<seed>``."""
    return Path(data_dir) / "xmarket-sim" / f"{scale}-seed{seed}"


def xmarket_root(data_dir: Path) -> Path:
    """Where real XMarket files are looked for: ``DATA_DIR/xmarket`` if that folder exists, else ``DATA_DIR``."""
    data_dir = Path(data_dir)
    return data_dir / "xmarket" if (data_dir / "xmarket").is_dir() else data_dir


def real_xmarket_present(data_dir: Path, domains: str | None = None, allow_none: bool = False) -> bool:
    """Whether the real XMarket files of every domain are under :func:`xmarket_root`.

    True when all are there. Files for some domains but not the others are an error naming the
    missing ones; with none at all, False when ``allow_none`` (the caller falls back to the
    synthetic twin), else an error. The one presence check of the run inputs and the loader.
    """
    from benchmark.data.xmarket import DEFAULT_DOMAINS, parse_domains, xmarket_files_present

    root = xmarket_root(data_dir)
    doms = parse_domains(domains) if domains else DEFAULT_DOMAINS
    present = [xmarket_files_present(root, (dom,)) for dom in doms]
    if all(present):
        return True
    if not any(present) and layouts.detect(root) in layouts.CROSS_MARKET:  # read by layouts.load_dir
        return True
    if any(present):
        absent = ", ".join(f"{m}/{c}" for (m, c), ok in zip(doms, present, strict=True) if not ok)
        raise DataError(f"real XMarket files found, but not for {absent}; fetch or copy them "
                        "(or choose --dataset xmarket-sim for the synthetic twin)", root)
    if allow_none:
        return False
    raise DataError(
        f"XMarket files not found under {root}: fetch them (`python -m benchmark data fetch xmarket`), copy them "
        "there (<market>/<Category>/ratings_<market>_<Category>.txt.gz + metadata_*.json.gz, or the cross-market "
        "5-core or WSDM Cup 2022 files), or ask for the synthetic twin with --dataset xmarket-sim"
    )


def load_dataset(
    name: str,
    data_dir: Path,
    scale: str = "small",
    seed: int = 0,
    domains: str | None = None,
    progress: bool = True,
    domain_field: str | None = None,
    time_field: str | None = None,
) -> Dataset:
    """Load dataset ``name``. ``domains``: an XMarket spec (``"us/Books,us/Electronics"``) for the
    xmarket sources, or the ``.item`` field holding the domain for ``recbole:<name>``.
    ``scale``/``seed`` select the synthetic twin's preset. The dataset's ``meta['paper_data']`` says
    whether it is the paper's XMarket (``paper_data.py``), decided after any domain filtering.
    """
    ds = _load(name, data_dir, scale, seed, domains, progress, domain_field, time_field)
    return with_paper_data(ds)


def _load(name: str, data_dir: Path, scale: str, seed: int, domains: str | None, progress: bool,
          domain_field: str | None, time_field: str | None) -> Dataset:
    from benchmark.data.xmarket import DEFAULT_DOMAINS, load_xmarket, parse_domains

    data_dir = Path(data_dir)
    if name in layouts.CROSS_MARKET:  # a card name: DATA_DIR/<name> or DATA_DIR itself
        root = data_dir / name if (data_dir / name).is_dir() else data_dir
        if layouts.detect(root) != name:
            raise DataError(f"no {name} files here ({next(x.files for x in layouts.LAYOUTS if x.name == name)})", root)
        return layouts.load_dir(root, domains, progress)
    if name == "xmarket":
        root = xmarket_root(data_dir)
        if not xmarket_files_present_any(root) and layouts.detect(root) in layouts.CROSS_MARKET:
            return layouts.load_dir(root, domains, progress, suite_default=True)
        real_xmarket_present(data_dir, domains)
        doms = parse_domains(domains) if domains else DEFAULT_DOMAINS
        root = xmarket_root(data_dir)
        ds = load_xmarket(root, doms, cache_dir=cache_root(root) / "parsed", progress=progress, name="xmarket")
        return _with_images(ds, root, progress)
    if name == "xmarket-sim":
        doms = parse_domains(domains) if domains else DEFAULT_DOMAINS
        out = sim_dir(data_dir, scale, seed)
        if not (out / "SIMULATED.json").is_file():
            from benchmark.data.simulator import generate
            from benchmark.fsutil import file_lock

            with file_lock(out.parent / f".{out.name}.lock"):  # two processes generate it once
                if not (out / "SIMULATED.json").is_file():
                    log.info("xmarket-sim: generating the %s twin (seed %d) in %s", scale, seed, out)
                    generate(out, scale=scale, seed=seed, progress=progress)
        ds = load_xmarket(
            out, doms, cache_dir=cache_root(out) / "parsed", progress=progress, name="xmarket-sim"
        )
        if not ds.synthetic:
            raise DataError("the synthetic twin's SIMULATED.json marker is missing", out)
        return _with_images(ds, out, progress)
    if name.startswith("recbole:") and len(name) > len("recbole:"):
        from benchmark.data.recbole_source import load_recbole

        if domain_field is None:  # older form: domains names the .item field
            return load_recbole(name.split(":", 1)[1], data_dir=data_dir, domain_field=domains, progress=progress)
        from benchmark.data.domains import parse_list, restrict

        ds = load_recbole(name.split(":", 1)[1], data_dir=data_dir, domain_field=domain_field, progress=progress)
        return restrict(ds, parse_list(domains), ds.meta["files"][-1])
    other = _other_source(name, data_dir, domains, domain_field, time_field, progress)
    if other is not None:
        return other
    known = ", ".join(n for n, _ in list_datasets())
    raise ConfigError(f"unknown dataset {name!r}{did_you_mean(name, list(_SUMMARIES))}; known: {known}")


def _other_source(name: str, data_dir: Path, domains, domain_field, time_field, progress) -> Dataset | None:
    """CSV files and cards (``csv:<path>``, a card name or ``.yaml``) and XMarket 5-core files."""
    from benchmark.data import cards, csv_source

    if name.startswith("csv:"):
        return csv_source.load_csv(Path(name[4:]), domain_field=domain_field, domains=domains, time_field=time_field)
    if name.startswith("xmarket:"):
        return layouts.load_dir(Path(name[8:]), domains=domains, progress=progress)
    card = cards.find_card(name)
    if card is not None and card.get("format") == "csv":
        spec = csv_source.card_spec(card)
        defaults = card.get("defaults") or {}
        ds = csv_source.load_csv(
            spec["file"], name=spec["name"], columns=spec["columns"], item_file=spec["item_file"], sep=spec["sep"],
            domain_field=domain_field or defaults.get("domain_field"), domains=domains,
            time_field=time_field, card=spec["card"],
        )
        return replace(ds, synthetic=bool(card.get("synthetic")))  # a toy fixture card says so
    if card is not None and card["name"] != name:
        return _load(card["name"], data_dir, "small", 0, domains, progress, domain_field, time_field)
    return None


def xmarket_files_present_any(root: Path) -> bool:
    """True when ``root`` holds any raw XMarket ratings file (then the raw loader decides what is missing)."""
    return bool(layouts.raw_domains(root))


def _with_images(ds: Dataset, root: Path, progress: bool) -> Dataset:
    """Fill ``Items.image_path`` from the local image cache, fetching what is not there yet."""
    urls = ds.items.image_url
    if urls is None or not any(bool(u) for u in urls):
        return ds
    from benchmark.data.images import fetch_images

    folder = cache_root(root) / "images"  # a read-only data dir: a writable cache elsewhere, said once
    try:
        items = fetch_images(ds.items, folder, progress=progress, allowed_root=root)
    except OSError as exc:  # never run on without the images the metadata names (a silently dropped modality)
        raise DataError(f"cannot use the image cache ({exc.strerror or exc}); free or fix it, or set "
                        f"{CACHE_DIR_ENV} to a writable folder", folder) from None
    n_img = int(np.count_nonzero(items.image_path != ""))
    meta = dict(ds.meta, images_with_url=int(sum(bool(u) for u in urls)), images_local=n_img)
    return replace(ds, items=items, meta=meta)
