"""The CTR ranking task of UniEmbedding (section 5.3, Table 4): DCNv2, FinalMLP and DIN fed item ID
embeddings alone or concatenated with a method's frozen, stored item embeddings.

Not an item-embedding method: it consumes the embeddings the matching suite stored
(benchmark/store/embeddings.py) and never refits a method. ``data`` builds the CTR examples from the
matching split, ``models`` holds the three ranking models, ``train`` fits one cell, ``suite`` runs
the grid and ``report`` writes Table 4 and claim C9.
"""
