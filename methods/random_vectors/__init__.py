"""Random-vector sanity baseline (not in the paper): chance-level item-to-item matching."""

from methods.random_vectors.model import RandomVectors

__all__ = ["RandomVectors"]
