"""Event source and sink ports, with their file and in-memory implementations.

A *source* yields raw records (``dict`` or JSON text) with the topic they came from; parsing
happens downstream so a malformed record can be dead-lettered with its reason rather than
crash the reader. A *sink* accepts JSON-ready records (dead letters, changelog, audit).

File layout of a stream directory (what ``riskgraph generate`` writes): one JSON-lines file per
topic – ``payments.jsonl``, ``device-events.jsonl``, ``social-events.jsonl``, ``labels.jsonl`` –
each sorted by event time. :class:`FileEventSource` merges them into one event-time order.
"""

from __future__ import annotations

import abc
import heapq
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

from feature_stream.events import TOPICS


class RawRecord(NamedTuple):
    """A record as read from a topic or file, before validation."""

    topic: str
    value: Any  # dict or JSON text
    offset: int


def utf8_or_escaped(raw: bytes) -> str:
    """``raw`` as UTF-8 text; bytes that are not UTF-8 come back escaped (``\\xe9``), which is
    no valid JSON, so validation rejects the record whole instead of taking an altered id."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


class EventSource(abc.ABC):
    """Port: an ordered stream of raw records."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[RawRecord]: ...


Undelivered = Callable[[list[Any], BaseException], None]
"""Called with records a sink accepted but could not deliver, and why (see
:attr:`EventSink.on_undelivered`)."""


class EventSink(abc.ABC):
    """Port: somewhere records are appended (dead letters, changelog, audit copies).

    A sink that writes at once raises from :meth:`send`. One that delivers later (Kafka) learns
    of a failure after ``send`` returned: it passes those records to :attr:`on_undelivered`
    when set, else raises from a later ``send`` or ``flush``.
    """

    on_undelivered: Undelivered | None = None

    @abc.abstractmethod
    def send(self, record: dict[str, Any]) -> None: ...

    def flush(self) -> None:  # noqa: B027 - optional for unbuffered sinks
        """Make every sent record durable."""

    def close(self) -> None:
        self.flush()


class FileEventSource(EventSource):
    """Replays a stream directory in event-time order (ties broken by topic order, then line).

    Lines that are not JSON objects are passed through as text so that validation rejects them
    with a reason; nothing is skipped silently.
    """

    def __init__(self, directory: Path, topics: tuple[str, ...] = tuple(TOPICS.values())) -> None:
        self.directory = Path(directory)
        missing = [t for t in topics if not (self.directory / f"{t}.jsonl").exists()]
        if len(missing) == len(topics):
            raise FileNotFoundError(
                f"no stream files in {self.directory}: expected some of "
                + ", ".join(f"{t}.jsonl" for t in topics)
            )
        self.topics = tuple(t for t in topics if t not in missing)

    def __iter__(self) -> Iterator[RawRecord]:
        iters = [self._read(i, t) for i, t in enumerate(self.topics)]
        for _, _, _, rec in heapq.merge(*iters):
            yield rec

    def _read(self, rank: int, topic: str) -> Iterator[tuple[str, int, int, RawRecord]]:
        with open(self.directory / f"{topic}.jsonl", "rb") as fh:
            for offset, raw in enumerate(fh):
                line = utf8_or_escaped(raw).strip()
                if not line:
                    continue
                try:
                    value: Any = json.loads(line)
                except json.JSONDecodeError:
                    value = line
                when = value.get("event_time") if isinstance(value, dict) else None
                # Unparseable times sort first so bad records surface early, never get lost.
                key = sort_time(when)
                yield key, rank, offset, RawRecord(topic, value, offset)


def sort_time(when: Any) -> str:
    """An ``event_time`` field as a UTC ISO string, which sorts chronologically; ``""`` when
    it is missing or not a time (such records sort first and are rejected by validation)."""
    if not isinstance(when, str):
        return ""
    try:
        return datetime.fromisoformat(when).astimezone(UTC).isoformat()
    except (ValueError, OverflowError):  # year 9999 at -14:00 is past datetime's range in UTC
        return ""


class InMemoryEventSource(EventSource):
    """Replays a list of raw records (tests, in-process pipelines)."""

    def __init__(self, records: list[tuple[str, Any]]) -> None:
        self._records = records

    def __iter__(self) -> Iterator[RawRecord]:
        for i, (topic, value) in enumerate(self._records):
            yield RawRecord(topic, value, i)


class InMemoryEventSink(EventSink):
    """Keeps records in a list (thread-safe)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)


class FileEventSink(EventSink):
    """Appends JSON lines to a file; ``flush`` fsyncs."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived
        self._lock = threading.Lock()

    def send(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            self._fh.write(line + "\n")

    def flush(self) -> None:
        import os

        with self._lock:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
