"""Raw-content baseline (the paper's 'CLIP' column): frozen content features, no training."""

from methods.clip.model import RawContent

__all__ = ["RawContent"]
