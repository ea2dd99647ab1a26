"""Kafka implementations of the event ports, topic naming, and the stream-directory producer.

Topics (all behind an optional ``prefix`` so tests and tenants never collide):

* the four source topics of :data:`~feature_stream.events.TOPICS` (``payments``, …),
* ``dead-letters`` – rejected records with the reason (written by the stream worker),
* ``graph-changelog`` – every accepted event, re-published by the worker for scoring replicas.

Records are JSON (UTF-8) values keyed by account id (:func:`record_key`); a record that is not
JSON (a malformed line) travels as its raw text, so validation downstream can dead-letter it.

Both ports here are **synchronous facades** over aiokafka, for CLIs, tests and backtests; the
stream worker (:mod:`feature_stream.stream_app`) uses aiokafka directly.

* :class:`KafkaEventSink` – idempotent producer (``enable_idempotence=True``, ``acks="all"``).
  ``send`` is asynchronous (buffered); ``flush`` returns once every record sent so far is
  acknowledged by the broker. A batch the broker refuses, or that times out, goes to
  ``on_undelivered`` with its records when that is set; otherwise it is raised. Failures are
  found at ``flush`` (which waits for every batch in flight) and at a later ``send`` once the
  oldest batch in flight is done; a ``send`` that raises for an earlier failure does not send
  its own record. At-least-once: a record reported undelivered may still have been written.
* :class:`KafkaEventSource` – consumer over one or more topics, optionally from a time range
  (Kafka record timestamps, i.e. produce time: ``offsets_for_times``). With a ``group_id`` it
  commits the offsets of the records it has yielded when it fetches the next batch and on
  ``close``, so a caller that processes each record before asking for the next one gets
  at-least-once delivery and resumes after the last committed record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Awaitable, Iterable, Iterator
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    NotCoordinatorForGroupError,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2

from feature_stream.event_io import (
    EventSink,
    EventSource,
    FileEventSource,
    RawRecord,
    utf8_or_escaped,
)
from feature_stream.events import TOPICS

log = logging.getLogger(__name__)
T = TypeVar("T")

DEAD_LETTERS = "dead-letters"
GRAPH_CHANGELOG = "graph-changelog"
PRODUCED_AT_HEADER = "rg-produced-ms"
"""Changelog header: Kafka timestamp (ms) of the source record, for end-to-end lag."""

BATCH_BYTES = 512 * 1024
"""Producer batch size (``max_batch_size``): a worker batch of 2,000 records (~300 bytes
each) fits in two produce batches instead of ~40 of aiokafka's default 16 KiB. The broker
accepts batches up to its ``message.max.bytes``, 1 MiB by default."""

Headers = list[tuple[str, bytes]]
OutRecord = tuple[str, bytes | None, bytes, Headers]
"""``(topic, key, value, headers)`` of one record to publish."""


@functools.lru_cache(maxsize=1 << 16)
def _partition_of(key: bytes, partitions: tuple[int, ...]) -> int:
    """The partition aiokafka's default partitioner picks for ``key`` (murmur2, as Java's)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


async def send_batched(
    producer: AIOKafkaProducer, records: Iterable[OutRecord]
) -> list[asyncio.Future[Any]]:
    """Queue ``records`` in as few produce batches as fit; returns one delivery future per
    batch (each raises if its batch failed).

    Every record goes to the partition ``producer.send`` would have picked for its key, and
    records of one partition keep their order. Compared with one ``send`` per record this
    skips a future, a partitioner call and an accumulator lookup per record: on the stream
    worker that was an eighth of its interpreter time. Callers must not interleave two calls
    for the same topic (the worker publishes one batch at a time)."""
    by_tp: dict[tuple[str, int], list[tuple[bytes | None, bytes, Headers]]] = {}
    partitions: dict[str, tuple[int, ...]] = {}
    pick = DefaultPartitioner()
    for topic, key, value, headers in records:
        parts = partitions.get(topic)
        if parts is None:
            parts = partitions[topic] = tuple(sorted(await producer.partitions_for(topic)))
        if len(parts) == 1:
            p = parts[0]
        elif key is None:
            p = pick(None, list(parts), list(parts))
        else:
            p = _partition_of(key, parts)
        by_tp.setdefault((topic, p), []).append((key, value, headers))
    acks: list[asyncio.Future[Any]] = []
    for (topic, p), recs in by_tp.items():
        batch = producer.create_batch()
        for key, value, headers in recs:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                acks.append(await producer.send_batch(batch, topic, partition=p))
                batch = producer.create_batch()  # the first record always fits
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        acks.append(await producer.send_batch(batch, topic, partition=p))
    return acks


def source_topics(prefix: str = "") -> dict[str, str]:
    """Event type → prefixed source topic name."""
    return {kind: prefix + topic for kind, topic in TOPICS.items()}


def all_topics(prefix: str = "") -> list[str]:
    """Every topic the platform uses, prefixed: sources, dead letters, graph changelog."""
    return [*source_topics(prefix).values(), prefix + DEAD_LETTERS, prefix + GRAPH_CHANGELOG]


def record_key(value: Any) -> str | None:
    """The partition key of a raw record: its account id (``src_account_id`` for social links);
    ``None`` for a record without one (malformed), which Kafka then spreads round-robin."""
    if isinstance(value, dict):
        key = value.get("account_id") or value.get("src_account_id")
        return str(key) if key is not None else None
    return None


def encode(value: Any) -> bytes:
    """Record value → bytes: JSON for mappings and lists, raw UTF-8 for text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def decode(raw: bytes | None) -> Any:
    """Bytes → the JSON value, or the text itself when it is not JSON (so it can be rejected)."""
    if raw is None:
        return None
    text = utf8_or_escaped(raw)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (replication factor 1 on a single broker)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if new:
            # Another process may create one between list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


class _LoopThread:
    """An event loop on a daemon thread, so synchronous code can drive aiokafka clients."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Awaitable[T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def call(self, coro: Awaitable[T]) -> T:
        return self.submit(coro).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _make_producer(bootstrap: str, linger_ms: int, client_id: str) -> AIOKafkaProducer:
    # aiokafka clients must be created inside their event loop.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        client_id=client_id,
        max_batch_size=BATCH_BYTES,
    )


async def _make_lock() -> asyncio.Lock:
    return asyncio.Lock()


class KafkaEventSink(EventSink):
    """Idempotent Kafka producer behind the :class:`EventSink` port (see module docs).

    ``topic`` fixes the destination; without it a record goes to the source topic of its
    ``type`` (with ``prefix``). Keys are account ids (:func:`record_key`).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str | None = None,
        *,
        prefix: str = "",
        linger_ms: int = 5,
        client_id: str = "riskgraph-sink",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.prefix = prefix
        self._loop = _LoopThread("kafka-sink")
        self._pending: list[tuple[Future[Any], list[Any]]] = []  # a batch, its values
        self._order = self._loop.call(_make_lock())
        self._producer: AIOKafkaProducer = self._loop.call(
            _make_producer(bootstrap, linger_ms, client_id)
        )
        self._loop.call(self._producer.start())

    def ensure_topics(self, topics: Iterable[str], partitions: int = 1) -> None:
        """Create the topics that do not exist yet (see :func:`ensure_topics`)."""
        self._loop.call(ensure_topics(self.bootstrap, list(topics), partitions))

    def send(self, record: dict[str, Any]) -> None:
        topic = self.topic or self.prefix + TOPICS[str(record.get("type"))]
        self.send_to(topic, record)

    def send_to(self, topic: str, value: Any, key: str | None = None) -> None:
        """Send one value (mapping or text) to ``topic``; key defaults to its account id."""
        self.send_many([(topic, key, value)])

    def send_many(self, items: list[tuple[str, str | None, Any]]) -> None:
        """Send ``(topic, key, value)`` triples in this order (``None`` key: :func:`record_key`)."""
        pending = self._pending
        if pending and (len(pending) > 256 or pending[0][0].done()):
            self._reap(block=False)  # replaces self._pending
        batch = self._loop.submit(self._send_many(items))
        self._pending.append((batch, [value for _, _, value in items]))

    async def _send_many(self, items: list[tuple[str, str | None, Any]]) -> None:
        records: list[OutRecord] = []
        for topic, key, value in items:
            k = key if key is not None else record_key(value)
            records.append((topic, k.encode() if k is not None else None, encode(value), []))
        # One batch at a time: sending can wait (metadata, a full buffer), and batches
        # interleaving there would reorder records (FIFO lock: submission order is kept).
        async with self._order:
            futures = await send_batched(self._producer, records)
        await asyncio.gather(*futures)

    def _reap(self, block: bool) -> None:
        """Forget the batches that are done (all of them, waiting, if ``block``); report the
        failed ones to :attr:`on_undelivered`, else raise the first failure."""
        keep, failed = [], []
        for batch, values in self._pending:
            if block or batch.done():
                exc = batch.exception()
                if exc is not None:
                    failed.append((values, exc))
            else:
                keep.append((batch, values))
        self._pending = keep
        if not failed:
            return
        if self.on_undelivered is None:
            exc = failed[0][1]
            lost = sum(len(values) for values, _ in failed)
            exc.add_note(f"{lost} record(s) in {len(failed)} batch(es) not delivered")
            raise exc
        for values, exc in failed:
            try:
                self.on_undelivered(values, exc)
            except Exception:  # the handler's own sink failed: the records are in the log
                log.exception("%d undelivered record(s) not kept either: %r", len(values), values)

    def flush(self) -> None:
        self._reap(block=True)
        self._loop.call(self._producer.flush())

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._loop.call(self._producer.stop())
            self._loop.stop()


class KafkaEventSource(EventSource):
    """Raw records from Kafka topics (see module docs for delivery and resume semantics).

    Args:
        topics: full topic names (use :func:`source_topics` for the prefixed source topics).
        group_id: consumer group; ``None`` reads every partition without committing anything.
        start, end: optional produce-time range ``[start, end)``; ``start`` seeks each partition
            with ``offsets_for_times``, ``end`` stops a partition at its first later record.
        idle_timeout_s: iteration ends after this long without a new record (``None``: never).
        strip_prefix: removed from topic names in the yielded :class:`RawRecord` so that
            validation sees the plain topic name (``payments``, not ``t1-payments``).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Iterable[str],
        *,
        group_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        idle_timeout_s: float | None = 5.0,
        strip_prefix: str = "",
        max_records: int = 500,
    ) -> None:
        for name, when in (("start", start), ("end", end)):
            if when is not None and when.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware, got {when!r}")
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group_id = group_id
        self.start = start
        self.end = end
        self.idle_timeout_s = idle_timeout_s
        self.strip_prefix = strip_prefix
        self.max_records = max_records
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __iter__(self) -> Iterator[RawRecord]:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._open())
            yield from self._records(loop)
        finally:
            self.close()

    def _records(self, loop: asyncio.AbstractEventLoop) -> Iterator[RawRecord]:
        consumer = self._consumer
        assert consumer is not None
        end_ms = int(self.end.timestamp() * 1000) if self.end is not None else None
        done: set[TopicPartition] = set()
        last_seen = time.monotonic()
        while True:
            if self.group_id is not None:
                loop.run_until_complete(consumer.commit())  # what was yielded is processed
            batch = loop.run_until_complete(
                consumer.getmany(timeout_ms=200, max_records=self.max_records)
            )
            if not batch:
                idle = time.monotonic() - last_seen
                if self.idle_timeout_s is not None and idle >= self.idle_timeout_s:
                    return
                continue
            last_seen = time.monotonic()
            for tp, msgs in batch.items():
                for m in msgs:
                    if end_ms is not None and m.timestamp >= end_ms:
                        done.add(tp)
                        consumer.pause(tp)
                        # Re-read from here next time: this record is outside the range.
                        consumer.seek(tp, m.offset)
                        break
                    yield RawRecord(self._plain(m.topic), decode(m.value), m.offset)
            if end_ms is not None and done >= consumer.assignment():
                return

    def _plain(self, topic: str) -> str:
        if self.strip_prefix and topic.startswith(self.strip_prefix):
            return topic[len(self.strip_prefix) :]
        return topic

    async def _open(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        if self.group_id is not None and self.start is None:
            consumer.subscribe(self.topics)
            return
        # A time range (or no group): read every partition explicitly.
        parts = []
        for t in self.topics:
            for p in sorted(
                consumer.partitions_for_topic(t) or await topic_partitions(consumer, t)
            ):
                parts.append(TopicPartition(t, p))
        consumer.assign(parts)
        if self.start is not None:
            ms = int(self.start.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(parts, ms))
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])

    def close(self) -> None:
        loop, consumer = self._loop, self._consumer
        if loop is None or loop.is_closed():
            return
        if consumer is not None:
            if self.group_id is not None and consumer.assignment():
                loop.run_until_complete(consumer.commit())
            loop.run_until_complete(consumer.stop())
            self._consumer = None
        loop.close()


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, topics: Iterable[str]
) -> dict[TopicPartition, int]:
    """Offsets consumer ``group`` has committed on ``topics``, by partition (a partition it has
    never committed is absent). Empty while the broker has no group coordinator: a fresh broker
    creates its offsets topic on first use, so nothing can have been committed yet."""
    wanted = set(topics)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError):
        return {}
    return {tp: o.offset for tp, o in offsets.items() if tp.topic in wanted and o.offset >= 0}


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """Partitions of ``topic``, forcing a metadata refresh (the topic may have just appeared)."""
    for _ in range(50):
        await consumer._client.force_metadata_update()  # no public API for a refresh
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await asyncio.sleep(0.1)
    raise LookupError(f"topic {topic!r} has no partitions (does it exist?)")


def produce_stream(
    directory: Path,
    sink: KafkaEventSink,
    *,
    rate: float | None = None,
    progress: bool = True,
    chunk: int = 200,
) -> int:
    """Publish a stream directory to the (prefixed) source topics in event-time order.

    ``rate`` is events per second (``None``: as fast as possible). Records keep the file they
    came from as their topic, malformed ones included (they are for the dead-letter path).
    Returns the number of records sent; every one is acknowledged when this returns.
    """
    from tqdm import tqdm

    records = list(FileEventSource(Path(directory)))
    sink.ensure_topics(all_topics(sink.prefix))
    bar = tqdm(total=len(records), unit="ev", disable=not progress, desc="produce")
    t0 = time.monotonic()
    sent = 0
    try:
        for i in range(0, len(records), chunk):
            part = records[i : i + chunk]
            sink.send_many([(sink.prefix + r.topic, None, r.value) for r in part])
            sent += len(part)
            bar.update(len(part))
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        sink.flush()
    finally:
        bar.close()
    return sent
