"""Item2Vec (Barkan & Koenigstein, MLSP 2016): SGNS over item sets (docs/methods.md section 8)."""

from methods.item2vec.model import Item2Vec, train_item2vec

__all__ = ["Item2Vec", "train_item2vec"]
