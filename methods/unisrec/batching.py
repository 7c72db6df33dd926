"""UniSRec's item-drop view of a causal window (the windows themselves: ``methods.shared.sequence``)."""

from __future__ import annotations

import numpy as np


def aug_positions(keep: np.ndarray) -> np.ndarray:
    """For an item-dropped window: position of prefix p's augmented output, cumsum(keep[:p+1]) - 1."""
    return np.cumsum(keep, axis=1) - 1
