"""Validate → dedupe → fuse: the one ingest path for replays, workers and the scoring API.

:class:`Ingestor` takes raw records, turns bad ones into dead letters (with the topic, offset,
field at fault and reason, and the raw value so nothing is lost), drops exact replays by event
id, and writes good events to the graph store and the feature store.

An event dated more than :data:`MAX_AHEAD_S` after the wall clock is refused too (field
``event_time``): nothing real happens in the future, and the stores' retention is keyed on the
newest event time, so one payment dated in the year 3000 would expire everything held.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from feature_stream.event_io import EventSink, RawRecord
from feature_stream.events import (
    TOPICS,
    DeviceEvent,
    InvalidEvent,
    LabelEvent,
    Payment,
    SocialEvent,
    parse_event,
)
from feature_stream.feature_store import FeatureStore
from feature_stream.features import observations_for
from feature_stream.graph_store import GraphStore

AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent
MAX_AHEAD_S = 86400.0
"""How far past the wall clock an event may be dated (clock skew between hosts)."""


@dataclass
class IngestStats:
    """Counters for one ingest run."""

    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    dead_letters: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.accepted.values()) + self.duplicates + self.dead_letters


def dead_letter(record: RawRecord, field_name: str, reason: str) -> dict[str, Any]:
    """The dead-letter record for a rejected raw record: enough to fix and replay it."""
    return {
        "topic": record.topic,
        "offset": record.offset,
        "field": field_name,
        "reason": reason,
        "value": record.value,
        "rejected_at": datetime.now(UTC).isoformat(),
    }


class Ingestor:
    """Fuses validated events into a graph store and a feature store."""

    def __init__(
        self,
        graph: GraphStore,
        features: FeatureStore,
        dead_letters: EventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.graph = graph
        self.features = features
        self.dead_letters = dead_letters
        self.clock = clock
        self.stats = IngestStats()

    def time_problem(self, event: AnyEvent) -> str | None:
        """Why ``event``'s time cannot be taken (``None``: it can)."""
        ahead = event.ts - self.clock()
        if ahead > MAX_AHEAD_S:
            return (
                f"{event.event_time.isoformat()} is {ahead / 86400:.1f} days after this host's "
                f"clock (at most {MAX_AHEAD_S / 3600:g} h ahead is taken)"
            )
        return None

    def parse(self, record: RawRecord) -> AnyEvent | None:
        """Validate one raw record; a bad one goes to dead letters and ``None`` comes back."""
        return self.parse_or_reject(record)[0]

    def parse_or_reject(self, record: RawRecord) -> tuple[AnyEvent | None, dict[str, Any] | None]:
        """:meth:`parse`, also returning the dead letter sent for a bad record (with its
        ``field`` and ``reason``)."""
        try:
            event = parse_event(record.value)
        except InvalidEvent as exc:
            return None, self._reject(record, exc.field, exc.reason)
        problem = self.time_problem(event)
        if problem is not None:
            return None, self._reject(record, "event_time", problem)
        expected = TOPICS[event.type]
        if record.topic and record.topic != expected:
            why = f"a {event.type} event on topic {record.topic!r} (expected {expected!r})"
            return None, self._reject(record, "type", why)
        return event, None

    def _reject(self, record: RawRecord, field_name: str, reason: str) -> dict[str, Any]:
        letter = dead_letter(record, field_name, reason)
        self.dead_letters.send(letter)
        self.stats.dead_letters += 1
        return letter

    def apply(self, event: AnyEvent) -> bool:
        """Fuse one validated event; ``False`` if it was a replay of one already applied.

        Both stores' writes are idempotent by event id, so the event is written first and only
        then marked seen: a crash between the two replays the writes (no effect) instead of
        skipping an event that was never written.
        """
        # Graph first: a label's observations need the labelled payment from the graph.
        self.graph.add(event)
        earlier = (
            self.graph.labels_for([event.event_id]).get(event.event_id, [])
            if isinstance(event, Payment)
            else []
        )
        self.features.add(observations_for(event, self.graph.transaction, earlier))
        if not self.features.mark_seen(event.event_id):
            self.stats.duplicates += 1
            return False
        self.stats.accepted[event.type] += 1
        return True

    def ingest(self, record: RawRecord) -> AnyEvent | None:
        """Parse and apply one raw record; returns the event if it was new and valid."""
        event = self.parse(record)
        if event is None:
            return None
        return event if self.apply(event) else None

    def run(self, records: Any, progress: Any = None) -> IngestStats:
        """Ingest every record of an iterable; ``progress`` (a tqdm bar) is advanced per record."""
        start = time.perf_counter()
        for rec in records:
            self.ingest(rec)
            if progress is not None:
                progress.update(1)
        self.stats.seconds += time.perf_counter() - start
        return self.stats
