"""UAE (Chen et al., ICASSP'21): content tower matched to fixed CF user vectors (docs/methods.md 11)."""

from methods.uae.model import UAE

__all__ = ["UAE"]
