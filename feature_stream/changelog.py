"""A scoring replica's recent graph window, materialised from the graph changelog topic.

The stream worker (:mod:`feature_stream.stream_app`) publishes every accepted event to
``<prefix>graph-changelog`` while it writes the batch to the durable stores (a replica may be
up to one batch ahead of Neo4j; offsets are committed after both, so both converge).
:class:`ChangelogFollower` reads every partition of that topic (no consumer group: each
replica needs all of it) into an :class:`InMemoryGraphStore` and an
:class:`InMemoryFeatureStore` through the same :meth:`Ingestor.apply` the embedded path uses.

Delivery semantics: the changelog is at-least-once (a worker replaying after a crash publishes
a batch again); :meth:`Ingestor.apply` drops events whose id was already applied, so the window
holds each event once. A replica starts from ``start`` (produce time, via ``offsets_for_times``)
or from the beginning of the topic, and commits nothing: a restarted replica rebuilds its
window from the topic.

Lag: each changelog record carries the source record's Kafka timestamp
(:data:`~feature_stream.kafka_io.PRODUCED_AT_HEADER`); after a batch is applied, ``now - that``
is recorded in :attr:`ChangelogFollower.lags_ms` (milliseconds, source produce → visible here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from feature_stream.event_io import InMemoryEventSink, RawRecord
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor
from feature_stream.kafka_io import GRAPH_CHANGELOG, PRODUCED_AT_HEADER, decode, topic_partitions

log = logging.getLogger(__name__)


class ChangelogFollower:
    """Tails ``<prefix>graph-changelog`` into in-memory stores (see module docs).

    >>> follower = ChangelogFollower("127.0.0.1:9092", prefix="t1-")  # doctest: +SKIP
    >>> await follower.start(); await follower.catch_up(); follower.graph.stats()  # doctest: +SKIP
    """

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "",
        *,
        graph: InMemoryGraphStore | None = None,
        features: InMemoryFeatureStore | None = None,
        start: datetime | None = None,
        max_lag_samples: int = 1_000_000,
    ) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware, got {start!r}")
        self.bootstrap = bootstrap
        self.topic = prefix + GRAPH_CHANGELOG
        self.graph = graph if graph is not None else InMemoryGraphStore()
        self.features = features if features is not None else InMemoryFeatureStore()
        self.invalid = InMemoryEventSink()  # a worker only publishes valid events; kept anyway
        self.ingestor = Ingestor(self.graph, self.features, self.invalid)
        self.start_time = start
        self.lags_ms: deque[float] = deque(maxlen=max_lag_samples)
        self.applied = 0
        self.replayed = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        self._consumer = consumer
        parts = [
            TopicPartition(self.topic, p)
            for p in sorted(await topic_partitions(consumer, self.topic))
        ]
        consumer.assign(parts)
        if self.start_time is not None:
            ms = int(self.start_time.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(parts, ms))
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        else:
            await consumer.seek_to_beginning(*parts)

    async def poll(self, timeout_ms: int = 100, max_records: int = 2000) -> int:
        """Apply one fetched batch; returns the number of records read."""
        consumer = self._require()
        batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        produced: list[int] = []
        n = 0
        for msgs in batch.values():
            for m in msgs:
                n += 1
                event = self.ingestor.parse(RawRecord("", decode(m.value), m.offset))
                if event is None:
                    continue
                if self.ingestor.apply(event):
                    self.applied += 1
                else:
                    self.replayed += 1
                stamp = dict(m.headers or ()).get(PRODUCED_AT_HEADER)
                if stamp is not None:
                    produced.append(int(stamp))
        if produced:
            now_ms = time.time() * 1000
            self.lags_ms.extend(now_ms - p for p in produced)
        return n

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            await self.poll()

    async def catch_up(self, timeout_s: float = 60.0) -> None:
        """Poll until every partition is read up to the end offsets seen at the call."""
        consumer = self._require()
        parts = consumer.assignment()
        ends = await consumer.end_offsets(list(parts))
        deadline = time.monotonic() + timeout_s
        while True:
            positions = {tp: await consumer.position(tp) for tp in parts}
            if all(positions[tp] >= ends[tp] for tp in parts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog not caught up after {timeout_s}s: {positions}")
            await self.poll()

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("call start() first")
        return self._consumer
