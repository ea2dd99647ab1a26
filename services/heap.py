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
import time
from collections.abc import Callable

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


class Refreezer:
    """Keeps the collector's full passes small in a long-running server.

    :func:`settle_heap` freezes the stores loaded at start, but a server keeps adding to them
    (about 15 tracked objects per scored payment: graph nodes and their lists, feature
    series, idempotency entries). CPython runs a full pass once 100 young-generation passes
    have gone by and the objects promoted since the last full pass exceed a quarter of those
    it kept; every full pass scans everything not frozen, so its pause grows with uptime: a
    full pass after 20,000 payments took 218 ms over 312,000 objects, and at 200 requests/s
    the first automatic one would come after about 200,000 (``bench/RESULTS.md``).

    :meth:`quiet_point` is called where nothing transient of a request is alive (between
    requests, between a child's messages). At most every ``every_s`` seconds it runs one full
    pass, which frees the cyclic garbage there is, then freezes what survived: the next pass
    scans only what was added since. A reference cycle that is alive then and dies later is
    never freed (it is frozen); that is why the call sites are quiet points. ``every_s`` ≤ 0
    turns it off.
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last = clock()
        self.passes = 0
        self.on_pause: Callable[[float], None] | None = None  # seconds, e.g. a histogram

    def quiet_point(self) -> float | None:
        """A full pass and a freeze if one is due; returns its pause (seconds), else ``None``."""
        if self.every_s <= 0 or self._clock() - self._last < self.every_s:
            return None
        t0 = time.perf_counter()
        gc.collect()
        gc.freeze()
        pause = time.perf_counter() - t0
        self._last = self._clock()
        self.passes += 1
        if self.on_pause is not None:
            self.on_pause(pause)
        return pause
