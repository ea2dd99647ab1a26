"""The stream worker: Kafka source topics → validate → graph store + feature store → changelog.

One worker consumes the four source topics (:data:`~feature_stream.events.TOPICS`, keyed by
account id) in one consumer group and, per batch:

1. validates every record with :meth:`Ingestor.parse`; rejects go to the ``dead-letters`` topic
   with the field at fault and the reason;
2. writes the accepted events to the graph store (:func:`write_graph`: one ``add_many``, then
   two reads), then their observations to the feature store (:func:`write_features`),
   retrying each stage with capped exponential backoff while its store is unavailable;
3. publishes every accepted event to the ``graph-changelog`` topic (header
   :data:`~feature_stream.kafka_io.PRODUCED_AT_HEADER` carries the source record's timestamp)
   as soon as it is validated, before step 2 — replicas may see up to ``pipeline_depth``
   batches before Neo4j does;
4. commits the batch's offsets once steps 2 and 3 are both acknowledged.

Batches are pipelined: while one batch is written to the stores (in threads, so Neo4j's
server time overlaps Python's work), the next ones are fetched, validated and published, up to
``pipeline_depth`` batches in flight. The two stages are two lanes: batch N+1's graph write
runs while batch N's observations are written (the graph write is most of a batch's time on
Neo4j). Each lane runs strictly in batch order, and so do commits; a batch whose write fails
stops every batch after it from being committed (the graph may hold one batch more, which the
replay after a restart MERGEs again).

Delivery and resume semantics (*exactly once in effect*):

* Offsets are committed manually (``enable_auto_commit=False``) and only after steps 2 and 3
  completed for every record at or before them, so a crash at any point replays from the last
  commit. The sinks are idempotent (graph writes MERGE by event id, observations by ``obs_id``,
  the seen-marks are set *after* the writes), so a replay changes nothing it already wrote.
* The changelog and the dead-letter topic are at-least-once: a replayed batch is published
  again. Changelog readers dedupe by event id (:mod:`feature_stream.changelog`).
* While a store is down the worker retries the same batch (delay doubling from
  ``retry_initial_s`` up to ``retry_max_s``, every attempt logged) and neither commits nor
  fetches past it; after ``give_up_after_s`` it exits with an error, still without committing,
  so a supervisor restart resumes from the same batch.
* Records are processed in produce-time order across the four topics (a partition is held back
  while another one that is behind could still deliver older records, at most
  ``align_max_wait_s``), so a label meets its payment already in the graph, as in a replay.

Why aiokafka rather than Faust agents: Faust's ``Stream.take`` acknowledges a batch in a
``finally`` block, so an agent that raised while a store was down would have its offsets
committed anyway; its commits are periodic, not "after this batch"; and batching through
``take`` loses the partition/offset a dead letter must name. The worker keeps the agents' shape
(thin adapter, all logic in :mod:`feature_stream.ingest` and the two stages) with explicit
commits. Scale-out is the same: N workers in one group, partitions assigned by Kafka.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_stream.event_io import InMemoryEventSink, RawRecord
from feature_stream.feature_store import FeatureStore
from feature_stream.features import observations_for
from feature_stream.graph_store import GraphStore, StoredLabel, TxnRecord
from feature_stream.ingest import AnyEvent, Ingestor
from feature_stream.kafka_io import (
    BATCH_BYTES,
    DEAD_LETTERS,
    GRAPH_CHANGELOG,
    PRODUCED_AT_HEADER,
    OutRecord,
    all_topics,
    decode,
    encode,
    ensure_topics,
    send_batched,
    source_topics,
)
from feature_stream.service_mode import WORKER_SERVICE_BACKENDS, with_service_defaults

log = logging.getLogger(__name__)
T = TypeVar("T")


class StreamConfig(BaseSettings):
    """Settings of one stream worker. Env var = ``RISKGRAPH_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="RISKGRAPH_", extra="forbid")

    mode: Literal["embedded", "service"] = Field(
        "embedded",
        description="RISKGRAPH_MODE; service: Neo4j and Redis unless a backend is named, as "
        "for the API (services.settings), so one env file configures both",
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="RISKGRAPH_KAFKA_BOOTSTRAP")
    topic_prefix: str = Field("", description="RISKGRAPH_TOPIC_PREFIX; isolates tenants/tests")
    group_id: str | None = Field(
        None, description="RISKGRAPH_GROUP_ID; default '<topic_prefix>riskgraph-stream'"
    )
    group_instance_id: str | None = Field(
        None,
        description="RISKGRAPH_GROUP_INSTANCE_ID; static membership: a restarted worker with "
        "the same id takes its partitions back without waiting for a session timeout",
    )
    partitions: int = Field(1, ge=1, description="RISKGRAPH_PARTITIONS; for topics it creates")
    graph_backend: Literal["neo4j", "memory"] = Field(
        "memory", description="RISKGRAPH_GRAPH_BACKEND"
    )
    feature_backend: Literal["redis", "memory"] = Field(
        "memory", description="RISKGRAPH_FEATURE_BACKEND"
    )
    neo4j_uri: str = Field("bolt://127.0.0.1:7687", description="RISKGRAPH_NEO4J_URI")
    neo4j_user: str | None = Field(None, description="RISKGRAPH_NEO4J_USER; None = no auth")
    neo4j_password: str | None = Field(None, description="RISKGRAPH_NEO4J_PASSWORD")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="RISKGRAPH_REDIS_URL")
    namespace: str = Field(
        "default", description="RISKGRAPH_NAMESPACE; Neo4j namespace, Redis key prefix rg:<ns>:"
    )
    batch_max: int = Field(2000, ge=1, description="RISKGRAPH_BATCH_MAX; records per sink write")
    poll_timeout_ms: int = Field(100, ge=1, description="RISKGRAPH_POLL_TIMEOUT_MS")
    align_max_wait_s: float = Field(0.5, ge=0, description="RISKGRAPH_ALIGN_MAX_WAIT_S")
    pipeline_depth: int = Field(
        2,
        ge=1,
        description="RISKGRAPH_PIPELINE_DEPTH; batches in flight: the next batch is parsed and "
        "published while the previous one is written (writes and commits stay in order)",
    )
    retry_initial_s: float = Field(0.2, gt=0, description="RISKGRAPH_RETRY_INITIAL_S")
    retry_max_s: float = Field(5.0, gt=0, description="RISKGRAPH_RETRY_MAX_S")
    give_up_after_s: float = Field(240.0, gt=0, description="RISKGRAPH_GIVE_UP_AFTER_S")
    session_timeout_ms: int = Field(10_000, ge=6_000, description="RISKGRAPH_SESSION_TIMEOUT_MS")
    metrics_port: int | None = Field(None, description="RISKGRAPH_METRICS_PORT; None = off")

    @model_validator(mode="before")
    @classmethod
    def _service_defaults(cls, data: Any) -> Any:
        return with_service_defaults(data, WORKER_SERVICE_BACKENDS)

    @property
    def neo4j_auth(self) -> tuple[str, str] | None:
        """The driver's ``auth``: ``(user, password)``, or ``None`` without a user."""
        return (self.neo4j_user, self.neo4j_password or "") if self.neo4j_user else None

    @property
    def group(self) -> str:
        return self.group_id or f"{self.topic_prefix}riskgraph-stream"


class StreamMetrics:
    """Prometheus metrics of one worker, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ns = "riskgraph_stream"
        self.consumed = Counter(f"{ns}_consumed", "Records consumed", ["topic"], registry=r)
        self.accepted = Counter(f"{ns}_accepted", "Valid events written", ["type"], registry=r)
        self.duplicates = Counter(f"{ns}_duplicates", "Events seen before (replays)", registry=r)
        self.dead = Counter(f"{ns}_dead_lettered", "Records rejected", ["topic"], registry=r)
        self.retries = Counter(f"{ns}_sink_retries", "Failed sink writes retried", registry=r)
        self.sink_seconds = Histogram(
            f"{ns}_sink_seconds",
            "Graph + feature store write time per batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )


_EVENT_TYPES = ("payment", "device", "social", "label")


class SinkUnavailable(RuntimeError):
    """The stores stayed unavailable for ``give_up_after_s``; nothing was committed."""


def build_stores(cfg: StreamConfig) -> tuple[GraphStore, FeatureStore]:
    """The graph and feature stores named by ``cfg`` (clients are built here, never at import)."""
    graph: GraphStore
    features: FeatureStore
    if cfg.graph_backend == "neo4j":
        from feature_stream.graph_neo4j import Neo4jGraphStore

        graph = Neo4jGraphStore(cfg.neo4j_uri, auth=cfg.neo4j_auth, namespace=cfg.namespace)
    else:
        from feature_stream.graph_memory import InMemoryGraphStore

        graph = InMemoryGraphStore()
    if cfg.feature_backend == "redis":
        from feature_stream.feature_redis import RedisFeatureStore

        features = RedisFeatureStore(cfg.redis_url, prefix=f"rg:{cfg.namespace}:")
    else:
        from feature_stream.feature_memory import InMemoryFeatureStore

        features = InMemoryFeatureStore()
    return graph, features


@dataclass(frozen=True)
class GraphWritten:
    """What the feature stage needs from the graph once a batch is written: the payments its
    labels belong to, and the labels stored before each of its payments."""

    known: dict[str, TxnRecord]
    stored: Mapping[str, Sequence[StoredLabel]]


def write_graph(graph: GraphStore, events: Sequence[AnyEvent]) -> GraphWritten:
    """Stage 1 of a batch: write ``events`` to the graph (MERGE by event id, idempotent), then
    read what the feature stage needs (two reads per batch). Labels find their payment in this
    batch or in the graph; a payment finds the labels stored before it."""
    if not events:
        return GraphWritten({}, {})
    graph.add_many(events)
    known = {e.event_id: _txn(e) for e in events if e.type == "payment"}
    wanted = [e.transaction_id for e in events if e.type == "label"]
    known |= graph.transactions([t for t in wanted if t not in known])
    stored = graph.labels_for([e.event_id for e in events if e.type == "payment"])
    return GraphWritten(known, stored)


def write_features(
    features: FeatureStore, events: Sequence[AnyEvent], written: GraphWritten
) -> tuple[int, int]:
    """Stage 2 of a batch: its observations (by ``obs_id``, idempotent), then the seen-marks;
    returns ``(new, replayed)`` counts."""
    observations = [
        o
        for e in events
        for o in observations_for(e, written.known.get, written.stored.get(e.event_id, ()))
    ]
    if observations:
        features.add(observations)
    new = sum(features.mark_seen(e.event_id) for e in events)
    return new, len(events) - new


def apply_batch(
    graph: GraphStore, features: FeatureStore, events: Sequence[AnyEvent]
) -> tuple[int, int]:
    """Write validated events to both stores (:func:`write_graph`, then
    :func:`write_features`); returns ``(new, replayed)`` counts.

    Crash-safe order for durable stores: graph (MERGE by event id), then observations (by
    ``obs_id``), then the seen-marks. A crash or an exception anywhere leaves the marks unset,
    so re-running the same batch writes whatever is missing and nothing twice. (Marking first,
    as :meth:`Ingestor.apply` does in-process, would skip a replayed event whose writes never
    happened.)
    """
    if not events:
        return 0, 0
    return write_features(features, events, write_graph(graph, events))


def _txn(e: Any) -> TxnRecord:
    return TxnRecord(
        e.event_id,
        e.ts,
        e.account_id,
        e.card_id,
        e.merchant_id,
        e.device_id,
        e.ip,
        e.amount,
        e.channel,
    )


class _Aligner(ConsumerRebalanceListener):
    """Buffers fetched records and releases them in produce-time order across partitions."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self.buf: dict[TopicPartition, deque[ConsumerRecord[bytes, bytes]]] = {}
        self._since = time.monotonic()

    def add(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        for tp, msgs in batch.items():
            self.buf.setdefault(tp, deque()).extend(msgs)

    def release(
        self, behind: set[TopicPartition], limit: int
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Records no older partition can precede: those at or before the newest buffered time
        of every partition that still has unread data (all of them after ``max_wait_s``)."""
        if not any(self.buf.values()):
            self._since = time.monotonic()
            return []
        mark = math.inf
        for tp in behind:
            q = self.buf.get(tp)
            mark = min(mark, q[-1].timestamp if q else -math.inf)
        if time.monotonic() - self._since > self.max_wait_s:
            mark = math.inf  # a partition that says it is behind but delivers nothing
        runs = [
            list(itertools.islice(itertools.takewhile(lambda m: m.timestamp <= mark, q), limit))
            for q in self.buf.values()
        ]
        out = list(itertools.islice(heapq.merge(*runs, key=lambda m: m.timestamp), limit))
        for m in out:
            self.buf[TopicPartition(m.topic, m.partition)].popleft()
        if out:
            self._since = time.monotonic()
        return out

    def touch(self) -> None:
        """Restart the idle clock (after a batch was processed, however long that took)."""
        self._since = time.monotonic()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.buf.pop(tp, None)  # the next owner re-reads them from the committed offset

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        parts = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        log.info("partitions assigned partitions=%s", ",".join(parts))


class StreamWorker:
    """Consumes the source topics into the stores until :meth:`stop` (see module docs)."""

    def __init__(
        self,
        cfg: StreamConfig,
        graph: GraphStore,
        features: FeatureStore,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.graph = graph
        self.features = features
        self.metrics = metrics or StreamMetrics()
        self._dead = InMemoryEventSink()
        self._ingestor = Ingestor(graph, features, self._dead)
        self._stop = asyncio.Event()
        self._topics = source_topics(cfg.topic_prefix)
        self._plain = {full: plain for plain, full in _topic_map(cfg.topic_prefix).items()}
        self._consumed = {t: self.metrics.consumed.labels(t) for t in self._plain.values()}
        self._accepted = {t: self.metrics.accepted.labels(t) for t in _EVENT_TYPES}
        self.batches = 0
        self.processed = 0  # records whose batch was written, published and committed
        # The newest batch's graph stage: the next batch's graph stage starts after it.
        self._graph_lane: asyncio.Future[tuple[GraphWritten, float]] | None = None

    def stop(self) -> None:
        """Finish the current batch, commit it, leave the group."""
        self._stop.set()

    async def run(self) -> None:
        cfg = self.cfg
        await ensure_topics(cfg.kafka_bootstrap, all_topics(cfg.topic_prefix), cfg.partitions)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.kafka_bootstrap,
            group_id=cfg.group,
            group_instance_id=cfg.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=cfg.batch_max,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(1000, cfg.session_timeout_ms // 5),
            # A batch may be retried for give_up_after_s without polling.
            max_poll_interval_ms=int((cfg.give_up_after_s + 60) * 1000),
            partition_assignment_strategy=(RangePartitionAssignor,),  # co-partitioned topics
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=BATCH_BYTES,
        )
        aligner = _Aligner(cfg.align_max_wait_s)
        consumer.subscribe(list(self._topics.values()), listener=aligner)
        await producer.start()
        await consumer.start()
        log.info("stream worker started group=%s topics=%s", cfg.group, list(self._topics.values()))
        inflight: deque[asyncio.Task[None]] = deque()
        try:
            while not self._stop.is_set():
                fetched = await consumer.getmany(
                    timeout_ms=cfg.poll_timeout_ms, max_records=cfg.batch_max
                )
                aligner.add(fetched)
                behind = set()
                for tp in consumer.assignment():
                    hw = consumer.highwater(tp)
                    if hw is None or await consumer.position(tp) < hw:
                        behind.add(tp)
                ready = aligner.release(behind, cfg.batch_max)
                if ready:
                    inflight.append(await self._submit(ready, producer, consumer, inflight))
                    aligner.touch()  # time spent writing is not a partition being idle
                while inflight and (len(inflight) >= cfg.pipeline_depth or inflight[0].done()):
                    await inflight.popleft()  # raises what the batch raised: stop fetching
            while inflight:  # stopping: finish, publish and commit what is in flight
                await inflight.popleft()
        finally:
            for task in inflight:
                task.cancel()
            # The last graph stage too: its batch's task may have been cancelled before it
            # awaited it, and a thread's write cannot be cancelled, only waited for.
            lane = [self._graph_lane] if self._graph_lane is not None else []
            await asyncio.gather(*inflight, *lane, return_exceptions=True)
            await consumer.stop()
            await producer.stop()
            log.info("stream worker stopped group=%s batches=%d", cfg.group, self.batches)

    async def _submit(
        self,
        msgs: list[ConsumerRecord[bytes, bytes]],
        producer: Any,
        consumer: AIOKafkaConsumer,
        inflight: deque[asyncio.Task[None]],
    ) -> asyncio.Task[None]:
        """Start one batch: parse and publish now; write its graph stage after the previous
        batch's graph stage, its feature stage after the previous batch is done; commit after
        both stages and the broker's acks."""
        previous = inflight[-1] if inflight else None
        events, acks = await self._publish(msgs, producer)
        graph = asyncio.ensure_future(self._graph_after(self._graph_lane, events))
        self._graph_lane = graph

        async def finish() -> None:
            written, graph_s = await asyncio.shield(graph)
            if previous is not None:
                await asyncio.shield(previous)
            t0 = time.perf_counter()
            _, replayed = await self._retrying(write_features, self.features, events, written)
            self.metrics.sink_seconds.observe(graph_s + time.perf_counter() - t0)
            self.metrics.duplicates.inc(replayed)
            await asyncio.gather(*acks)  # acknowledged by the broker before the commit
            await self._commit(consumer, msgs)
            self.batches += 1
            self.processed += len(msgs)
            log.debug("batch records=%d accepted=%d", len(msgs), len(events))

        return asyncio.ensure_future(finish())

    async def _graph_after(
        self, previous: asyncio.Future[tuple[GraphWritten, float]] | None, events: list[AnyEvent]
    ) -> tuple[GraphWritten, float]:
        """Write ``events`` to the graph once the batch before is in the graph (the graph sees
        batches in order); returns what the feature stage needs and the seconds it took. A
        failed batch fails every batch after it: none of them is committed, so a restart
        replays them all in order."""
        if previous is not None:
            await asyncio.shield(previous)
        t0 = time.perf_counter()
        written = await self._retrying(write_graph, self.graph, events)
        return written, time.perf_counter() - t0

    async def _retrying(self, stage: Callable[..., T], *args: Any) -> T:
        """Run ``stage(*args)`` (idempotent) in a thread, so the store's server time overlaps
        Python's work; while it raises, retry with capped exponential backoff."""
        cfg, delay = self.cfg, self.cfg.retry_initial_s
        deadline = time.monotonic() + cfg.give_up_after_s
        attempt = 0
        while True:
            try:
                result = await asyncio.to_thread(stage, *args)
            except Exception as exc:  # any store failure: retry the whole (idempotent) stage
                attempt += 1
                if time.monotonic() + delay > deadline:
                    log.error("sinks unavailable, giving up attempts=%d error=%r", attempt, exc)
                    raise SinkUnavailable(f"stores unavailable after {attempt} attempts") from exc
                log.warning(
                    "sink write failed, retrying attempt=%d delay_s=%.2f error=%s",
                    attempt,
                    delay,
                    type(exc).__name__,
                )
                self.metrics.retries.inc()
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                    raise SinkUnavailable("stopped while the stores were unavailable") from exc
                except TimeoutError:
                    pass
                delay = min(delay * 2, cfg.retry_max_s)
                continue
            if attempt:
                log.info("sinks recovered attempts=%d", attempt)
            return result

    async def _publish(
        self, msgs: list[ConsumerRecord[bytes, bytes]], producer: Any
    ) -> tuple[list[AnyEvent], list[asyncio.Future[Any]]]:
        """Validate a batch, queue its dead letters and changelog records for sending; returns
        the accepted events (first occurrence of each id) and the send acknowledgements."""
        m = self.metrics
        events: dict[str, tuple[AnyEvent, ConsumerRecord[bytes, bytes]]] = {}
        consumed: dict[str, int] = {}
        for msg in msgs:
            topic = self._plain.get(msg.topic, msg.topic)
            consumed[topic] = consumed.get(topic, 0) + 1
            event = self._ingestor.parse(RawRecord(topic, decode(msg.value), msg.offset))
            if event is not None:
                events.setdefault(event.event_id, (event, msg))
        for topic, n in consumed.items():  # counters once per batch, not once per record
            (self._consumed.get(topic) or m.consumed.labels(topic)).inc(n)
        dead, self._dead.records = self._dead.records, []
        acks: list[asyncio.Future[Any]] = []
        for d in dead:
            m.dead.labels(str(d["topic"])).inc()
            acks.append(await producer.send(self._dead_topic, encode(d)))
        accepted: dict[str, int] = {}
        changelog = self._changelog_topic
        records: list[OutRecord] = []
        for event, msg in events.values():
            accepted[event.type] = accepted.get(event.type, 0) + 1
            # The source record as sent: it parses to this same event.
            header = [(PRODUCED_AT_HEADER, str(msg.timestamp).encode())]
            records.append((changelog, event.key.encode(), msg.value, header))
        for kind, n in accepted.items():
            self._accepted[kind].inc(n)
        acks.extend(await send_batched(producer, records))
        return [e for e, _ in events.values()], acks

    async def _commit(
        self, consumer: AIOKafkaConsumer, msgs: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        offsets: dict[TopicPartition, int] = {}
        for msg in msgs:
            tp = TopicPartition(msg.topic, msg.partition)
            offsets[tp] = max(offsets.get(tp, 0), msg.offset + 1)
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # e.g. a rebalance: the new owner replays, idempotently
            log.warning("commit failed, batch will be replayed error=%r", exc)

    @property
    def _dead_topic(self) -> str:
        return self.cfg.topic_prefix + DEAD_LETTERS

    @property
    def _changelog_topic(self) -> str:
        return self.cfg.topic_prefix + GRAPH_CHANGELOG


def _topic_map(prefix: str) -> dict[str, str]:
    return {plain: prefix + plain for plain in source_topics("").values()}


def make_app(
    cfg: StreamConfig,
    graph: GraphStore | None = None,
    features: FeatureStore | None = None,
) -> StreamWorker:
    """The worker for ``cfg``; stores default to the backends ``cfg`` names."""
    if graph is None or features is None:
        built_graph, built_features = build_stores(cfg)
        graph = graph or built_graph
        features = features or built_features
    return StreamWorker(cfg, graph, features)


def run_worker(cfg: StreamConfig) -> int:
    """Run a worker until SIGTERM/SIGINT (finish the batch, commit, exit 0); 1 if the stores
    stayed unavailable (nothing committed past what was written)."""
    worker = make_app(cfg)
    if cfg.metrics_port is not None:
        start_http_server(cfg.metrics_port, registry=worker.metrics.registry)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        except SinkUnavailable as exc:
            log.error("stream worker exiting: %s", exc)
            return 1
        return 0

    try:
        return asyncio.run(main())
    finally:
        worker.graph.close()
        worker.features.close()
