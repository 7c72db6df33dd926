"""TransRec (Wang et al., arXiv 2206.06190; seed 001): end-to-end mixture-of-modality recommender."""

from methods.transrec.model import TransRec

__all__ = ["TransRec"]
