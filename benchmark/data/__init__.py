"""Data layer: loaders (xmarket, xmarket-sim, recbole), preprocessing, split, stats."""

from benchmark.data.model import Dataset, Interactions, Items, Sequences, Split, TestCases, TrainView

__all__ = ["Dataset", "Interactions", "Items", "Sequences", "Split", "TestCases", "TrainView"]
