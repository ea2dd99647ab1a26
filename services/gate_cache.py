"""The gate policy's answers, reused for identical inputs for a short while.

The gate's input is the caller and the request's context (tenant, purpose, region, model
version): the same for every payment one client sends, so evaluating it once per payment
spends a Wasm call (≈ 0.6 ms on the 2-core host) to learn what the last call said. The
policies are pure functions of their input (no ``time.now_ns``, no ``http.send``), so an
answer for the same input is the same answer; ``ttl_s`` bounds how long a policy change
on an OPA server takes to show. Failures are never kept: the next request evaluates again,
and fails closed again if the policy is still unavailable.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from services.policy import GateResult, PolicyEvaluator


class GateCache:
    """``gate(request)`` as :meth:`PolicyEvaluator.gate`, evaluated at most once per input per
    ``ttl_s`` seconds; at most ``max_entries`` inputs kept (least recently used go first)."""

    def __init__(
        self,
        policy: PolicyEvaluator,
        ttl_s: float = 1.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("ttl_s must be >= 0 and max_entries >= 1")
        self.policy = policy
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.hits = self.evaluations = 0
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[float, GateResult]] = OrderedDict()

    def gate(self, request: dict[str, Any]) -> GateResult:
        """The gate's answer for ``request``; raises what the policy raises (not kept)."""
        key = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
        now = self.clock()
        with self._lock:
            got = self._kept.get(key)
            if got is not None and now - got[0] < self.ttl_s:
                self._kept.move_to_end(key)
                self.hits += 1
                return got[1]
        result = self.policy.gate(request)
        with self._lock:
            self.evaluations += 1
            self._kept[key] = (now, result)
            self._kept.move_to_end(key)
            while len(self._kept) > self.max_entries:
                self._kept.popitem(last=False)
        return result
