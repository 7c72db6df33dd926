"""CB2CF (Barkan et al., RecSys'19): multiview content -> Item2Vec regression (docs/methods.md 10)."""

from methods.cb2cf.model import CB2CF

__all__ = ["CB2CF"]
