"""UniEmbedding (Dai et al., CIKM'24): user-view contrastive pretraining of a domain-aware
multi-modal adapter (docs/methods.md section 2), plus its Table 1 / Table 3 variants and
the earlier-part user view [proposal]."""

from methods.uniembedding.model import (
    UniEmbedding,
    UniEmbeddingEarlierView,
    UniEmbeddingText,
    UniEmbeddingWithoutCrossDomain,
    UniEmbeddingWithoutUserView,
    train_uniembedding,
)

__all__ = [
    "UniEmbedding",
    "UniEmbeddingEarlierView",
    "UniEmbeddingText",
    "UniEmbeddingWithoutCrossDomain",
    "UniEmbeddingWithoutUserView",
    "train_uniembedding",
]
