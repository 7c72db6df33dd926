"""SASRec (Kang & McAuley, ICDM'18): the ID-only next-item reference of the sequence methods."""

from methods.sasrec.model import SASRec

__all__ = ["SASRec"]
