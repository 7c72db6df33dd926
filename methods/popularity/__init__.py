"""Popularity sanity baseline (not in the paper): shows the floor any method must clear."""

from methods.popularity.model import Popularity

__all__ = ["Popularity"]
