"""Garbage-collector settings for processes that hold the in-memory stores.

The embedded graph and feature stores are millions of small, long-lived Python objects, and
replaying or serving allocates many more short-lived ones. With CPython's default thresholds
(700, 10, 10) the collector runs a young-generation pass every 700 net allocations and keeps
promoting store objects into generations it then scans again: about an eighth of a demo
backtest's replay time (28.6 s with the collector off, 32.5 s with the defaults, 27.9 s with
:data:`THRESHOLDS`, same scores). Reference cycles are still collected, only less often.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 50, 100)
# Once the stores are frozen, the collector's regular work is the young generations, and
# each pass pauses every thread for a time that grows with what it scans. Inside a loaded
# API process at 200 requests/s: a gen-0 pass at 50,000 objects took 12-46 ms, at 5,000 about
# 5 ms; a gen-1 pass, which scans what the stores gained since the last one (about 15 objects
# per request), took 106 ms every ~50 s at (5,000, 50) and at most 33 ms every ~10 s at
# (5,000, 10) (bench/RESULTS.md). A request that lands on a pause waits it out.
SERVING_THRESHOLDS = (5_000, 10, 100)


def tune_collector() -> None:
    """Collect less often (:data:`THRESHOLDS`); call once at process start."""
    gc.set_threshold(*THRESHOLDS)


def freeze_heap() -> None:
    """Move everything allocated so far (the loaded graph and feature stores: millions of
    objects) out of the garbage collector's reach: a full collection over them stalls every
    request for seconds. Call once, after loading history and before serving."""
    gc.collect()
    gc.freeze()


def settle_heap() -> None:
    """For a process that has loaded its stores and is about to serve (the API, the
    inference process of :mod:`gnn.engine_process`): :func:`freeze_heap`, then collect the
    young generation in short pauses (:data:`SERVING_THRESHOLDS`)."""
    freeze_heap()
    gc.set_threshold(*SERVING_THRESHOLDS)
