"""UniSRec (Hou et al., KDD'22): universal sequence representations from item text via an MoE adaptor."""

from methods.unisrec.method import UniSRec, UniSRecTransductive

__all__ = ["UniSRec", "UniSRecTransductive"]
