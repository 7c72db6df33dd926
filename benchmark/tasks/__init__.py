"""The three tasks on one engine (``benchmark.grid``) and one store (``benchmark.store``).

``matching`` (Table 1/3: item-to-item and next-item are two scorings of the same runs),
``ranking`` (Table 4: CTR models on stored embeddings), ``transfer`` (TransRec's Tables 6-9).
The CLI dispatches on a suite's ``task:`` key (``benchmark.dispatch``).
"""
