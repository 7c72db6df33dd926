"""MISSRec (Wang et al., ACM MM'23): multi-modal interest-aware sequence representations."""

from methods.missrec.method import MISSRec, MISSRecTransductive

__all__ = ["MISSRec", "MISSRecTransductive"]
