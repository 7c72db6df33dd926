"""RecBole 1.2.1's GRU4Rec and NextItNet as ID-only next-item baselines (TransRec's IDRNN, IDCNN)."""

from methods.recbole_seq.model import GRU4Rec, NextItNet

__all__ = ["GRU4Rec", "NextItNet"]
