"""Item content features: prompt builder, text and image encoders, on-disk cache."""

from benchmark.features.model import ItemFeatures

__all__ = ["ItemFeatures"]
