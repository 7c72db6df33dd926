"""Reports from stored results only, one module per task on the shared writers.

``matching`` (Tables 1/3, Figures 6/7, C1..C12), ``ranking`` (Table 4, C9), ``transfer``
(Tables 6-9, C10/C11); ``writers`` (atomic files, report folders), ``claims``, ``tables``,
``figures``, ``significance``, ``results`` (reading matching records). Import the module you need.
"""
