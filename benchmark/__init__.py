"""uie-bench: the reproducibility benchmark for universal item embeddings."""

__version__ = "0.1.0"
