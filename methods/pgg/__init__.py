"""PGG: Purified Graph Generation (He et al., KDD'21), reconstructed as PGG-lite (docs/methods.md 9.1)."""

from methods.pgg.model import PGG

__all__ = ["PGG"]
