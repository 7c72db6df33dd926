"""Dataset cards (``datasets/*.yaml``) -> the ``dataset:`` section a run uses.

``--dataset NAME`` may be a card's ``name`` (or file stem) in ``datasets/``, a card file path, a
source such as ``recbole:<name>``/``xmarket``/``xmarket-sim``, or a path (a RecBole directory with
``<name>.inter``, an XMarket-layout directory, or a CSV/TSV file). A card's ``defaults:`` section
(``domain_field``, ``domains``, ``time_field``) supplies what the user did not say, so
``--dataset recbole:ml-100k`` runs with genre as the domain without further flags.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmark.errors import ConfigError, did_you_mean

CARDS_DIR = Path(__file__).resolve().parents[2] / "datasets"
BUILTIN = ("xmarket", "xmarket-sim")


def _read(path: Path) -> dict:
    try:
        card = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read dataset card ({str(exc).splitlines()[0]})") from None
    if not isinstance(card, dict) or not isinstance(card.get("name"), str):
        raise ConfigError(f"{path}: a dataset card is a YAML mapping with a 'name'")
    card["_path"] = str(path.resolve())
    return card


def all_cards(cards_dir: Path = CARDS_DIR) -> list[dict]:
    """Every card in ``datasets/`` (sorted by file name)."""
    return [_read(p) for p in sorted(cards_dir.glob("*.yaml"))] if cards_dir.is_dir() else []


def find_card(spec: str, cards_dir: Path = CARDS_DIR) -> dict | None:
    """The card ``spec`` names: a card file path, or a card's ``name``/file stem in ``cards_dir``."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return _read(p)
    for card in all_cards(cards_dir):
        if spec in (card["name"], Path(card["_path"]).stem):
            return card
    return None


def resolve_dataset(spec: str, domains: str | None = None, cards_dir: Path = CARDS_DIR) -> dict:
    """The ``dataset:`` config section for ``--dataset spec`` (and ``--domains``).

    Keys: ``name`` (what :func:`benchmark.data.sources.load_dataset` loads), ``domains``,
    ``domain_field`` and ``time_field`` (from the card's ``defaults:`` unless given).
    """
    card = find_card(spec, cards_dir)
    if card is not None:
        defaults = card.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ConfigError(f"{card['_path']}: 'defaults' must be a mapping")
        # a CSV card is loaded from its file; a card of a built-in source by the source's name
        name = card["_path"] if card.get("format") == "csv" else card["name"]
        out = {"name": name}
        for key in ("domain_field", "time_field"):
            if defaults.get(key) is not None:
                out[key] = str(defaults[key])
        dom = domains if domains is not None else defaults.get("domains")
        out["domains"] = ",".join(dom) if isinstance(dom, list) else dom
        if name == "xmarket":
            out["fallback"] = "xmarket-sim"
        return out
    p = Path(spec)
    if spec in BUILTIN or spec.startswith(("recbole:", "xmarket:", "csv:")):
        return {"name": spec, "domains": domains}
    if p.is_dir():
        if any(p.glob("*.inter")):
            return {"name": f"recbole:{p.resolve()}", "domains": domains}
        return {"name": f"xmarket:{p.resolve()}", "domains": domains}
    if p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".txt"):
        return {"name": f"csv:{p.resolve()}", "domains": domains}
    known = [c["name"] for c in all_cards(cards_dir)] + list(BUILTIN)
    raise ConfigError(
        f"unknown dataset {spec!r}{did_you_mean(spec, known)}; give a card name ({', '.join(sorted(set(known)))}), "
        "recbole:<name>, a card .yaml, a RecBole or XMarket directory, or a CSV/TSV file"
    )


def dataset_overrides(spec: str | None, domains: str | None) -> list[str]:
    """``--set`` overrides equivalent to ``--dataset``/``--domains`` (so runs record them as config)."""
    if spec is None:
        return [f"dataset.domains={domains}"] if domains is not None else []
    section = resolve_dataset(spec, domains)
    out = [f"dataset.name={section['name']}"]
    if section.get("domains") is not None or section["name"] not in BUILTIN:  # XMarket keeps the suite's list
        out.append(f"dataset.domains={section.get('domains') or 'null'}")
    for key in ("domain_field", "time_field"):
        out.append(f"dataset.{key}={section.get(key) or 'null'}")
    return out


def shared_item_ids(card: dict | str | None, default: bool = False) -> bool:
    """What a card says about its item ids: ``shared_item_ids: true`` = one id names one product in
    every domain (XMarket's ASINs); false = ids are per domain. ``card`` is a card or a card name."""
    if isinstance(card, str):
        card = find_card(card)
    value = (card or {}).get("shared_item_ids", default)
    if not isinstance(value, bool):
        raise ConfigError(f"{(card or {}).get('_path', 'dataset card')}: 'shared_item_ids' must be true or false")
    return value
