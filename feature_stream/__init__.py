"""Events, stream workers, graph fusion and online features.

Nothing here imports from ``gnn`` or ``services``: dependencies point
``services → gnn → feature_stream``.
"""
