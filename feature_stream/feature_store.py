"""The ``FeatureStore`` port: windowed observations per key, queried point in time.

The port holds *observations* – ``(key, ts, value, member)`` – and answers window queries over
``[start, end)``; the feature definitions themselves are pure functions in
:mod:`feature_stream.features`. The primitives map one-to-one onto Redis sorted sets, so the
in-memory store and the Redis store pass the same contract suite
(``tests/feature_stream/feature_store_contract.py``).

Times are POSIX seconds. Every query interval is half-open: an observation at exactly ``end``
is never counted, which is what makes a feature at time ``t`` blind to events at or after ``t``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Observation(NamedTuple):
    """One thing that happened to ``key`` at ``ts``.

    ``value`` is summed by window queries, ``member`` is counted by distinct queries and
    first-seen checks; ``obs_id`` makes the write idempotent.
    """

    key: str
    ts: float
    value: float = 0.0
    member: str = ""
    obs_id: str = ""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """``count`` and ``total`` of observations in a window; ``latest`` is the newest one's time."""

    count: int
    total: float
    latest: float = -math.inf


class FeatureStoreUnavailable(RuntimeError):
    """The store cannot be reached (a server down or restarting). Callers on the scoring
    path degrade instead of failing; writers keep what they could not write."""


class FeatureStore(abc.ABC):
    """Port for online features. Public methods validate; ``_`` methods do the work."""

    def add(self, observations: Sequence[Observation]) -> None:
        """Record observations. Re-adding an ``obs_id`` already recorded for a key is a no-op."""
        for o in observations:
            if not o.key or not o.obs_id:
                raise ValueError(f"an observation needs a key and an obs_id: {o!r}")
            if not math.isfinite(o.ts):
                raise ValueError(f"observation time must be finite: {o!r}")
        self._add(observations)

    def window(self, key: str, start: float, end: float) -> WindowStats:
        """Count, sum and newest time of ``key``'s observations with ``start <= ts < end``."""
        _check_interval(start, end)
        return self._window(key, start, end)

    def distinct(self, key: str, start: float, end: float) -> tuple[int, float]:
        """Distinct members of ``key`` in ``[start, end)`` and the newest observation's time."""
        _check_interval(start, end)
        return self._distinct(key, start, end)

    def first_seen(self, key: str, member: str) -> float:
        """Time ``member`` was first observed under ``key`` (``inf`` if never)."""
        return self._first_seen(key, member)

    def mark_seen(self, event_id: str) -> bool:
        """Idempotency gate: ``True`` the first time an event id is offered, ``False`` after."""
        if not event_id:
            raise ValueError("event_id must be non-empty")
        return self._mark_seen(event_id)

    def evict_before(self, ts: float) -> None:  # noqa: B027 - stores with TTLs need nothing here
        """Drop observations older than ``ts`` (first-seen times are kept)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    def _add(self, observations: Sequence[Observation]) -> None: ...
    @abc.abstractmethod
    def _window(self, key: str, start: float, end: float) -> WindowStats: ...
    @abc.abstractmethod
    def _distinct(self, key: str, start: float, end: float) -> tuple[int, float]: ...
    @abc.abstractmethod
    def _first_seen(self, key: str, member: str) -> float: ...
    @abc.abstractmethod
    def _mark_seen(self, event_id: str) -> bool: ...


def _check_interval(start: float, end: float) -> None:
    if not start <= end:
        raise ValueError(f"window start {start} is after end {end}")
