"""The item prompt builder (UniEmbedding 4.3) and UniSRec-style text cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import Items
from benchmark.errors import MissingRequirementError
from benchmark.features.prompt import build_prompts, clean_text, item_prompt


def test_clean_text_unisrec_rules():
    assert clean_text('Tom &amp; Jerry\n"Classic"\r  Edition') == "Tom & Jerry Classic Edition"
    assert clean_text("<p>Fast <b>charger</b></p><br/>for phones") == "Fast charger for phones"
    assert clean_text("  a \t  b  ") == "a b"
    assert clean_text("") == "" and clean_text(None) == ""  # type: ignore[arg-type]
    # UniSRec blanks texts of >= 2000 characters as junk
    assert clean_text("x" * 1999) == "x" * 1999
    assert clean_text("x" * 2000) == ""
    assert clean_text("word " * 10, max_chars=20) == ""
    # an inequality sign is not a tag
    assert clean_text("size < 10 > 5") == "size < 10 > 5"


def test_item_prompt_has_every_field_in_order():
    p = item_prompt(
        "Cell_Phones_and_Accessories",
        "Rugged &quot;Armor&quot; Case...",
        ("Cases", "Holsters & Clips", "Cases", ""),
        "<p>Drop-proof case.\nFits model X.</p>",
    )
    assert p == (
        "A product from the Cell Phones and Accessories domain. Title: Rugged Armor Case. "
        "Categories: Cases, Holsters & Clips. Description: Drop-proof case. Fits model X."
    )


def test_item_prompt_leaves_out_empty_fields_and_cuts_description():
    assert item_prompt("Books", "Dune", (), "") == "A product from the Books domain. Title: Dune."
    desc = " ".join(f"w{i}" for i in range(200))
    p = item_prompt("Books", "Dune", ["Fiction"], desc, max_desc_words=10)
    assert p.endswith("Description: w0 w1 w2 w3 w4 w5 w6 w7 w8 w9.")
    assert "w10" not in p
    assert "Description" not in item_prompt("Books", "Dune", [], desc, max_desc_words=0)
    # a long run-on description is cut, not blanked and not kept whole
    junk = item_prompt("Books", "Dune", [], "x" * 5000, max_desc_words=64)
    assert 64 * 8 <= len(junk) < 64 * 8 + 80


def _items(title=True, description=True, features=True):
    n = 3
    return Items(
        domains=("Books", "Electronics"),
        source_id=np.array(["a", "b", "c"], dtype=object),
        domain=np.array([0, 1, 1], dtype=np.int16),
        title=np.array(["Dune", "Zoom Lens", "Tripod"], dtype=object) if title else None,
        categories=np.array([("Fiction", "Sci-Fi"), ("Camera & Photo",), ()], dtype=object),
        description=np.array(["A desert planet.", "", ""], dtype=object) if description else None,
        features=np.array(["", "18-55mm zoom", ""], dtype=object) if features else None,
        image_path=np.array([""] * n, dtype=object),
    )


def test_build_prompts_one_per_item_with_domain_names():
    prompts = build_prompts(_items())
    assert prompts == [
        "A product from the Books domain. Title: Dune. Categories: Fiction, Sci-Fi. Description: A desert planet.",
        # empty description: the feature bullets stand in
        "A product from the Electronics domain. Title: Zoom Lens. Categories: Camera & Photo. Description: 18-55mm zoom.",
        "A product from the Electronics domain. Title: Tripod.",
    ]
    # missing optional columns are fine
    assert build_prompts(_items(description=False, features=False))[1].endswith("Categories: Camera & Photo.")


def test_build_prompts_id_only_dataset():
    with pytest.raises(MissingRequirementError, match="no item text"):
        build_prompts(_items(title=False))
