"""UniM2Rec (Sun et al., arXiv 2311.01831): universal multi-modal multi-domain pretrained
recommendation (seed 003; no public code), plus its C12 ablation variants."""

from methods.unim2rec.model import UniM2Rec, UniM2RecLinear, UniM2RecSingleDomain, UniM2RecText

__all__ = ["UniM2Rec", "UniM2RecLinear", "UniM2RecSingleDomain", "UniM2RecText"]
