"""VQ-Rec (Hou et al., WWW'23): vector-quantised text codes as transferable item representations."""

from methods.vqrec.method import VQRec

__all__ = ["VQRec"]
