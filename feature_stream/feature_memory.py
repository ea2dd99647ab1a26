"""In-process :class:`FeatureStore`: sorted per-key series with prefix sums."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from feature_stream.feature_store import FeatureStore, Observation, WindowStats


class _Series:
    """Observations of one key sorted by time, with a running sum for O(log n) window sums."""

    __slots__ = ("cum", "ids", "members", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cum: list[float] = [0.0]  # cum[i] = sum of the first i values
        self.members: list[str] = []
        self.ids: set[str] = set()

    def add(self, o: Observation) -> bool:
        """Record ``o``; ``False`` (and nothing changes) if its ``obs_id`` is already here."""
        if o.obs_id in self.ids:
            return False
        self.ids.add(o.obs_id)
        if not self.times or o.ts >= self.times[-1]:
            self.times.append(o.ts)
            self.members.append(o.member)
            self.cum.append(self.cum[-1] + o.value)
            return True
        # Out of order (a late event): insert and rebuild the running sum from there.
        i = bisect.bisect_right(self.times, o.ts)
        values = [b - a for a, b in zip(self.cum[i:], self.cum[i + 1 :], strict=False)]
        self.times.insert(i, o.ts)
        self.members.insert(i, o.member)
        values.insert(0, o.value)
        del self.cum[i + 1 :]
        for v in values:
            self.cum.append(self.cum[-1] + v)
        return True


class InMemoryFeatureStore(FeatureStore):
    """Embedded default feature store (single process, not thread-safe for writes)."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self._first: dict[str, dict[str, float]] = {}
        self._seen: set[str] = set()

    def _add(self, observations: Sequence[Observation]) -> None:
        series = self._series
        first = self._first
        for o in observations:
            s = series.get(o.key)
            if s is None:
                s = series[o.key] = _Series()
            if not s.add(o):
                continue
            if o.member:
                fm = first.get(o.key)
                if fm is None:
                    fm = first[o.key] = {}
                prev = fm.get(o.member)
                if prev is None or o.ts < prev:
                    fm[o.member] = o.ts

    def _window(self, key: str, start: float, end: float) -> WindowStats:
        s = self._series.get(key)
        if s is None:
            return WindowStats(0, 0.0)
        lo = bisect.bisect_left(s.times, start)
        hi = bisect.bisect_left(s.times, end)
        if hi <= lo:
            return WindowStats(0, 0.0)
        return WindowStats(hi - lo, s.cum[hi] - s.cum[lo], s.times[hi - 1])

    def _distinct(self, key: str, start: float, end: float) -> tuple[int, float]:
        s = self._series.get(key)
        if s is None:
            return 0, -math.inf
        lo = bisect.bisect_left(s.times, start)
        hi = bisect.bisect_left(s.times, end)
        if hi <= lo:
            return 0, -math.inf
        return len(set(s.members[lo:hi])), s.times[hi - 1]

    def _first_seen(self, key: str, member: str) -> float:
        fm = self._first.get(key)
        if fm is None:
            return math.inf
        return fm.get(member, math.inf)

    def _mark_seen(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        return True

    def evict_before(self, ts: float) -> None:
        for s in self._series.values():
            k = bisect.bisect_left(s.times, ts)
            if k:
                base = s.cum[k]
                del s.times[:k]
                del s.members[:k]
                s.cum = [c - base for c in s.cum[k:]]
