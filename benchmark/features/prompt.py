"""The one item-text prompt every content method sees (UniEmbedding 4.3; docs/protocol.md 1.4 step 5).

The paper feeds CLIP "the item's domain name, title, categories, and description information
with prompt text" [seed 4.3]; the template wording is ours [proposal]. Fields are cleaned the
way UniSRec cleans item text (html-unescape, drop ``"``, newlines, collapse spaces, blank junk
texts of >= 2000 characters) [code], so every method gets exactly the same string.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Iterable, Sequence

from benchmark.data.model import Items
from benchmark.errors import MissingRequirementError

_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")  # html tags such as <br/>, <b>, </p>
_DROP = re.compile(r'["\n\r\t]')
_SPACE = re.compile(r"\s+")
_CHARS_PER_WORD = 8  # the description is also cut at 8 characters per allowed word (run-on junk)


def clean_text(s: str, max_chars: int = 2000) -> str:
    """UniSRec's text cleaning: html-unescape, strip ``"``/``\\n``/``\\r``, collapse spaces.

    As in UniSRec, a text of ``max_chars`` characters or more is treated as junk and blanked.
    We also drop html tags (XMarket descriptions carry some) [proposal] and replace newlines by
    a space rather than gluing the words together.
    """
    if not s:
        return ""
    s = html.unescape(str(s))
    s = _TAG.sub(" ", s)
    s = _DROP.sub(" ", s)
    s = _SPACE.sub(" ", s).strip()
    return "" if len(s) >= max_chars else s


def _field(s: str) -> str:
    """A prompt field without trailing full stops (the template adds its own)."""
    return s.rstrip(". ").strip()


def _categories(categories: Sequence[str] | str | None) -> list[str]:
    if not categories:
        return []
    if isinstance(categories, str):
        categories = [categories]
    out: list[str] = []
    for c in _flatten(categories):
        c = _field(clean_text(c))
        if c and c not in out:
            out.append(c)
    return out


def _flatten(values: Iterable) -> Iterable[str]:
    for v in values:
        if isinstance(v, str):
            yield v
        elif isinstance(v, Iterable):
            yield from _flatten(v)
        elif v is not None:
            yield str(v)


def domain_name(domain: str) -> str:
    """'Cell_Phones_and_Accessories' -> 'Cell Phones and Accessories'."""
    return _SPACE.sub(" ", str(domain).replace("_", " ")).strip()


def item_prompt(
    domain: str,
    title: str,
    categories: Sequence[str],
    description: str,
    max_desc_words: int = 64,
) -> str:
    """One item's prompt: domain name, title, categories, description (UniEmbedding 4.3).

    ``A product from the Electronics domain. Title: ... Categories: a, b. Description: ...``
    Empty fields are left out. The description is cut to its first ``max_desc_words`` words
    (CLIP reads 77 tokens, MiniLM 256) and at ``8 * max_desc_words`` characters [proposal],
    rather than blanked when long.
    """
    parts = [f"A product from the {domain_name(domain)} domain"]
    t = _field(clean_text(title))
    if t:
        parts.append(f"Title: {t}")
    cats = _categories(categories)
    if cats:
        parts.append("Categories: " + ", ".join(cats))
    if max_desc_words > 0 and description:
        words = clean_text(description, max_chars=sys.maxsize).split(" ")
        d = _field(" ".join(words[:max_desc_words])[: _CHARS_PER_WORD * max_desc_words])
        if d:
            parts.append(f"Description: {d}")
    return ". ".join(parts) + "."


def build_prompts(items: Items, max_desc_words: int = 64) -> list[str]:
    """The prompt of every item, row = item index (one builder for all methods).

    Where an item's description is empty its feature bullets stand in [proposal]: XMarket
    leaves many descriptions blank but lists features (docs/protocol.md 1.4 step 5 uses both).
    """
    if items.title is None:
        raise MissingRequirementError("dataset has no item text/metadata: cannot build item prompts")
    n = len(items)
    cats = items.categories if items.categories is not None else [()] * n
    desc = items.description if items.description is not None else [""] * n
    feats = items.features if items.features is not None else [""] * n
    names = items.domains
    dom = items.domain.tolist()
    return [
        item_prompt(
            names[dom[i]], items.title[i] or "", cats[i] or (), desc[i] or feats[i] or "", max_desc_words
        )
        for i in range(n)
    ]
