"""Where a backtest's records come from besides a stream directory: a Kafka time range.

:class:`KafkaRangeSource` reads the four source topics
(:func:`feature_stream.kafka_io.source_topics` with a prefix) between two Kafka record
timestamps (produce time) and yields them merged into event-time order, the order
:class:`~feature_stream.event_io.FileEventSource` gives a stream directory: ties broken by
topic (payments, device events, social events, labels), then partition, then offset; records
whose event time cannot be read come first so validation dead-letters them. With one
partition per topic a range holding a produced stream directory
(:func:`feature_stream.kafka_io.produce_stream`) replays in exactly the files' order.

Range: each partition is read from the first offset whose timestamp is ``>= start``
(``offsets_for_times``; the beginning without ``start``) up to, not including, the first
offset whose timestamp is ``>= end`` (the end offset at open time without ``end``), so the
record set is fixed when iteration starts and the source can be read again identically (what
checkpoint resume needs). The merge is a k-way merge of partitions: it assumes each
partition is in event-time order (producers write in event-time order per account key).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from feature_stream.event_io import EventSource, RawRecord, sort_time
from feature_stream.events import TOPICS
from feature_stream.kafka_io import decode, topic_partitions

_Keyed = tuple[str, int, int, int, RawRecord]


@dataclass(frozen=True)
class _Part:
    tp: TopicPartition
    rank: int  # the topic's place in TOPICS: the tie-break FileEventSource uses
    lo: int
    hi: int


class KafkaRangeSource(EventSource):
    """The source topics of ``prefix`` between two produce times, in event-time order.

    Args:
        start, end: timezone-aware produce-time range ``[start, end)``; either may be ``None``.
        fetch_timeout_s: a partition that yields nothing this long before its end offset is an
            error (the broker went away), not an end of data.
    """

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        topics: tuple[str, ...] = tuple(TOPICS.values()),
        fetch_timeout_s: float = 30.0,
        max_records: int = 2000,
    ) -> None:
        for name, when in (("start", start), ("end", end)):
            if when is not None and when.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware, got {when!r}")
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.start = start
        self.end = end
        self.topics = topics
        self.fetch_timeout_s = fetch_timeout_s
        self.max_records = max_records

    def describe(self) -> str:
        """The range in words (checkpoint fingerprints, report titles)."""
        span = f"{self.start.isoformat() if self.start else '-'} .. "
        span += self.end.isoformat() if self.end else "end"
        return f"kafka://{self.bootstrap}/{self.prefix}* [{span})"

    async def _open(self, last_payments: bool = False) -> tuple[AIOKafkaConsumer, list[_Part]]:
        """A consumer assigned every partition, positioned at the range's start (or, with
        ``last_payments``, at the last record of each payments partition's range, everything
        else paused); the parts to read."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            ranked = []
            for rank, topic in enumerate(self.topics):
                for n in sorted(await topic_partitions(consumer, self.prefix + topic)):
                    ranked.append((TopicPartition(self.prefix + topic, n), rank))
            tps = [tp for tp, _ in ranked]
            consumer.assign(tps)
            lo = await self._offsets(
                consumer, tps, self.start, await consumer.beginning_offsets(tps)
            )
            hi = await self._offsets(consumer, tps, self.end, await consumer.end_offsets(tps))
            parts = [_Part(tp, rank, lo[tp], hi[tp]) for tp, rank in ranked if hi[tp] > lo[tp]]
            if last_payments:
                pay = TOPICS["payment"]
                parts = [
                    _Part(p.tp, p.rank, p.hi - 1, p.hi) for p in parts if self.topics[p.rank] == pay
                ]
            # Fetch only what will be read: an assigned partition is fetched unless paused.
            consumer.pause(*tps)
            for p in parts:
                consumer.resume(p.tp)
                consumer.seek(p.tp, p.lo)
        except BaseException:
            await consumer.stop()
            raise
        return consumer, parts

    @staticmethod
    async def _offsets(
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        when: datetime | None,
        default: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        if when is None:
            return dict(default)
        ends = await consumer.end_offsets(tps)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, int(when.timestamp() * 1000)))
        return {tp: hit.offset if (hit := found.get(tp)) is not None else ends[tp] for tp in tps}

    def size(self) -> int:
        """Records in the range (an upper bound where transaction markers take offsets)."""
        return sum(p.hi - p.lo for p in self._parts())

    def _parts(self) -> list[_Part]:
        loop = asyncio.new_event_loop()
        try:
            consumer, parts = loop.run_until_complete(self._open())
            loop.run_until_complete(consumer.stop())
        finally:
            loop.close()
        return parts

    def last_payment_time(self) -> float | None:
        """Event time (epoch seconds) of the latest last payment of the range's payments
        partitions; ``None`` if the range holds no readable payment."""
        times = [
            datetime.fromisoformat(key).timestamp()
            for key, *_ in self._merged(last_payments=True)
            if key
        ]
        return max(times, default=None)

    def __iter__(self) -> Iterator[RawRecord]:
        for *_, rec in self._merged():
            yield rec

    def _merged(self, last_payments: bool = False) -> Iterator[_Keyed]:
        loop = asyncio.new_event_loop()
        consumer = None
        try:
            consumer, parts = loop.run_until_complete(self._open(last_payments))
            yield from heapq.merge(*(self._read(loop, consumer, p) for p in parts))
        finally:
            if consumer is not None:
                loop.run_until_complete(consumer.stop())
            loop.close()

    def _read(
        self, loop: asyncio.AbstractEventLoop, consumer: AIOKafkaConsumer, part: _Part
    ) -> Iterator[_Keyed]:
        """One partition's records in ``[part.lo, part.hi)``, keyed for the merge."""
        tp, topic = part.tp, self.topics[part.rank]
        deadline = time.monotonic() + self.fetch_timeout_s
        while True:
            msgs, done = loop.run_until_complete(self._fetch(consumer, part))
            for m in msgs:
                if m.offset >= part.hi:
                    break
                value = decode(m.value)
                yield (
                    sort_time(value.get("event_time") if isinstance(value, dict) else None),
                    part.rank,
                    tp.partition,
                    m.offset,
                    RawRecord(topic, value, m.offset),
                )
            if done:
                return
            if msgs:
                deadline = time.monotonic() + self.fetch_timeout_s
            elif time.monotonic() > deadline:
                raise TimeoutError(
                    f"{tp.topic}[{tp.partition}]: nothing read for {self.fetch_timeout_s}s "
                    f"before offset {part.hi}"
                )

    async def _fetch(self, consumer: AIOKafkaConsumer, part: _Part) -> tuple[list[Any], bool]:
        """The next records of a partition, and whether its range is read to the end."""
        batch = await consumer.getmany(part.tp, timeout_ms=200, max_records=self.max_records)
        # The position also moves past offsets that hold no record (transaction markers).
        done = await consumer.position(part.tp) >= part.hi
        if done:
            consumer.pause(part.tp)  # fetch nothing more for it
        return batch.get(part.tp, []), done
