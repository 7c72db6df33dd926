"""The run store: what a finished run leaves on disk and in MLflow.

``records`` (one record format for every task, with a ``task`` field), ``embeddings`` (stored item
vectors, read back by downstream tasks), ``tracking`` (MLflow, never on the results path) and
``sync`` (logs to MLflow what it lacks, for every task). Above the lower floors (data, features,
evaluation, plugin, registry); below ``grid`` and ``tasks``.
"""
