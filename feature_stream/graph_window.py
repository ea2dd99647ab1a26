"""A scoring replica's graph: the recent window in memory, the durable store for the rest.

:class:`WindowedGraphStore` is the service-mode :class:`~feature_stream.graph_store.GraphStore`
of the scoring API. It composes

* a :class:`WindowGraph` – an :class:`~feature_stream.graph_memory.InMemoryGraphStore` holding
  the last ``window_s`` seconds of event time, fed by a
  :class:`~feature_stream.changelog.ChangelogFollower` tailing ``<prefix>graph-changelog`` on
  its own thread (:class:`ChangelogThread`), and
* the durable store behind it (:class:`~feature_stream.graph_neo4j.Neo4jGraphStore`, written
  by the stream workers), asked only for what the window cannot answer.

**The horizon.** The window is *complete from event time* ``horizon`` on: it holds every event
with ``event_time >= horizon`` that the workers have published, and nothing older.

* At start the follower seeks the changelog to produce time ``now - window_s``. If that lands
  on the first record of every partition (offset 0: nothing was skipped or deleted), the window
  reads everything the workers ever published and the start horizon is ``-inf``; otherwise it
  is that produce time, which is safe because an event is never produced before it happens
  (``event_time <= produce time``).
* As event time advances the window keeps ``window_s`` of it: every ``window_s / 10`` it drops
  edges older than ``newest - window_s`` and the horizon moves up to that cut. Events older
  than the horizon (late arrivals) are not added, so the invariant holds exactly.

**Window or fallback, per query.** A query payment at time ``t`` is sampled from the window iff
``t > horizon`` and every one of its own entities (account, card, merchant, and device and IP
when present) has at least one edge in the window before ``t``. Otherwise the whole query is
sampled from the durable store: ``before_horizon`` (its neighbourhood lies before what the
window holds) or ``unseen_entity`` (an entity the window does not know: new, or last active
before the horizon). Both paths apply the same point-in-time rule (edges strictly before
``t``). What a window-served query does *not* see is history older than the horizon of an
entity that is also active inside it: the window is the replica's memory, as the retention is
for the embedded store, and entity degrees count the edges the window holds. Counts per
reason are in :attr:`WindowedGraphStore.samples` and exported by :class:`WindowMetrics`. If
the durable store fails, its queries are answered from the window (``durable_unavailable``):
a score is still owed.

**Writes.** :meth:`WindowedGraphStore.add` (the API's own scored payments, posted events and
verdict labels) applies the event to the window at once, so the next score sees it, and
publishes it to its source topic (``publish``): the workers write it to Neo4j and Redis and
send it back through the changelog, where the window drops it by event id. The API never
writes the durable store itself. A publish that fails, at once or when the broker refuses or
times out a batch after ``send`` returned (the sink's ``on_undelivered``), is logged, counted
(``publish_failures``, per event) and kept as a dead letter in ``undelivered`` for a replay;
the window keeps the event.

Threading: the window takes its own lock for every read and write (the follower thread writes,
the inference worker and review threads read); the durable store's reads are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feature_stream.changelog import ChangelogFollower
from feature_stream.event_io import EventSink
from feature_stream.events import TOPICS, DeviceEvent, LabelEvent, Payment, SocialEvent, to_record
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import Observation
from feature_stream.graph_memory import InMemoryGraphStore, NodeKey
from feature_stream.graph_schema import ACCOUNT, CARD, DEVICE, IP, MERCHANT
from feature_stream.graph_store import GraphStore, StoredLabel, Subgraph, TxnRecord
from feature_stream.kafka_io import GRAPH_CHANGELOG, topic_partitions

log = logging.getLogger(__name__)

AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent

IN_WINDOW, BEFORE_HORIZON, UNSEEN_ENTITY = "in_window", "before_horizon", "unseen_entity"
REASONS = (IN_WINDOW, BEFORE_HORIZON, UNSEEN_ENTITY)
DURABLE_UNAVAILABLE = "durable_unavailable"  # routed to the durable store, answered by the window


class WindowGraph(InMemoryGraphStore):
    """The in-memory window: thread-safe, complete for event times ``>= horizon``.

    Args:
        window_s: seconds of event time kept (edges older than ``newest - window_s`` go).
        horizon: event time from which the window starts complete (see module docs).
        max_degree: most recent edges kept per node, as in the in-memory store.
    """

    def __init__(self, window_s: float, horizon: float = -math.inf, max_degree: int = 5000) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        # The base store's own retention sweep is off: this class sweeps and moves the horizon.
        super().__init__(retention_s=math.inf, max_degree=max_degree)
        self.window_s = float(window_s)
        self.lock = threading.RLock()
        self.dropped = 0  # events not added because they are older than the horizon
        self._horizon = horizon
        self._newest = -math.inf
        self._sweep_at = -math.inf

    @property
    def horizon(self) -> float:
        """Event time (POSIX seconds) from which the window holds everything."""
        return self._horizon

    def raise_horizon(self, ts: float) -> None:
        """Declare the window complete only from ``ts`` on (drops what is older)."""
        with self.lock:
            if ts > self._horizon:
                self._horizon = ts
                super()._evict_before(ts)

    def add(self, event: AnyEvent) -> None:
        with self.lock:
            if isinstance(event, LabelEvent):
                # A label outside the window is kept only while its payment may still come.
                if event.ts < self._horizon and self._transaction(event.transaction_id) is None:
                    self.dropped += 1
                    return
                super().add(event)
                return
            if isinstance(event, Payment | DeviceEvent | SocialEvent) and event.ts < self._horizon:
                self.dropped += 1
                return
            super().add(event)  # raises TypeError for a non-event
            self._slide(event.ts)

    def _slide(self, ts: float) -> None:
        if ts > self._newest:
            self._newest = ts
            if ts >= self._sweep_at:
                # Every tenth of the window: amortised O(1) per event, as the base store does.
                self.raise_horizon(ts - self.window_s)
                self._sweep_at = ts + self.window_s / 10

    def knows_before(self, key: NodeKey, t: float) -> bool:
        """Whether node ``key`` has an edge in the window strictly before ``t``."""
        adj = self._adj.get(key)
        return adj is not None and bool(adj.times) and adj.times[0] < t

    def holds(self, transaction_id: str) -> bool:
        """Whether the window has the payment or a label for it."""
        return transaction_id in self._txns or transaction_id in self._labels

    # Every read and write of the base store under the lock (the follower writes concurrently).
    def sample(self, queries: Sequence[Payment], fanouts: Sequence[int]) -> list[Subgraph]:
        with self.lock:
            return super().sample(queries, fanouts)

    def transaction(self, transaction_id: str) -> TxnRecord | None:
        with self.lock:
            return super().transaction(transaction_id)

    def label(self, transaction_id: str, as_of: float) -> int:
        with self.lock:
            return super().label(transaction_id, as_of)

    def labels_for(self, transaction_ids: Sequence[str]) -> dict[str, list[StoredLabel]]:
        with self.lock:
            return super().labels_for(transaction_ids)

    def evict_before(self, ts: float) -> int:
        with self.lock:
            dropped = super().evict_before(ts)
            self._horizon = max(self._horizon, ts)
            return dropped

    def stats(self) -> dict[str, int]:
        with self.lock:
            return super().stats()


class SeenOnlyFeatures(InMemoryFeatureStore):
    """The follower's feature store on a scoring replica: it keeps only the seen-marks (the
    follower's replay count). Online features live in Redis, written by the workers."""

    def _add(self, observations: Sequence[Observation]) -> None:
        pass


async def complete_since(bootstrap: str, topic: str, start: datetime) -> float:
    """The start horizon of a window read from produce time ``start`` (see module docs):
    ``-inf`` when every partition of ``topic`` would be read from offset 0, else ``start``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        found = await consumer.offsets_for_times(
            dict.fromkeys(parts, int(start.timestamp() * 1000))
        )
        ends = await consumer.end_offsets(parts)
        first = [hit.offset if (hit := found.get(tp)) is not None else ends[tp] for tp in parts]
        return -math.inf if all(o == 0 for o in first) else start.timestamp()
    finally:
        await consumer.stop()


class ChangelogThread:
    """Runs a :class:`ChangelogFollower` on a daemon thread with its own event loop.

    :meth:`start` returns once the follower has read every partition up to the end offsets
    seen when it started (the replica is ready); it raises if that fails or takes longer than
    ``catch_up_timeout_s``. Afterwards the thread keeps polling (errors are logged, counted in
    ``errors`` and retried after a second) until :meth:`close`.
    """

    def __init__(self, follower: ChangelogFollower, catch_up_timeout_s: float = 300.0) -> None:
        self.follower = follower
        self.catch_up_timeout_s = catch_up_timeout_s
        self.errors = 0
        self.caught_up_s: float | None = None  # how long the catch-up took
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="changelog", daemon=True)

    @property
    def running(self) -> bool:
        return self._ready.is_set() and self._error is None and self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()
        # The follower enforces the catch-up timeout; the margin covers connecting.
        if not self._ready.wait(self.catch_up_timeout_s + 60):
            self.close()
            raise TimeoutError("the graph changelog follower did not start")
        if self._error is not None:
            self._thread.join(timeout=10)
            raise RuntimeError(f"graph changelog not caught up: {self._error!r}") from self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        stop = self._stop = asyncio.Event()
        follower = self.follower
        t0 = time.monotonic()
        try:
            await follower.start()
            await follower.catch_up(self.catch_up_timeout_s)
        except Exception as exc:  # reported to start(), which raises it in the caller's thread
            self._error = exc
            self._ready.set()
            await follower.close()
            return
        self.caught_up_s = time.monotonic() - t0
        log.info(
            "graph changelog caught up topic=%s applied=%d seconds=%.1f",
            follower.topic,
            follower.applied,
            self.caught_up_s,
        )
        self._ready.set()
        try:
            while not stop.is_set():
                try:
                    await follower.poll()
                except Exception:
                    self.errors += 1
                    log.exception("graph changelog poll failed; retrying")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
        finally:
            await follower.close()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class WindowedGraphStore(GraphStore):
    """The in-memory window in front of a durable store (see the module docs for the rule).

    Args:
        window: the window, fed by ``follower`` (or by :meth:`add` alone in tests).
        durable: the store asked for queries outside the window (``None``: the window answers
            everything).
        publish: where the events fused here go (their source topics); ``None``: nowhere.
        follower: the running changelog thread, stopped by :meth:`close`.
    """

    def __init__(
        self,
        window: WindowGraph,
        durable: GraphStore | None = None,
        publish: EventSink | None = None,
        follower: ChangelogThread | None = None,
        undelivered: EventSink | None = None,
    ) -> None:
        self.window = window
        self.durable = durable
        self.publisher = publish
        self.undelivered = undelivered
        self.follower = follower
        self.samples: Counter[str] = Counter({r: 0 for r in REASONS})
        self.publish_failures = 0
        self._publish_lock = threading.Lock()
        if publish is not None:  # failures found after send returned (under _publish_lock)
            publish.on_undelivered = self._not_published

    @classmethod
    def open(
        cls,
        bootstrap: str,
        prefix: str = "",
        *,
        durable: GraphStore | None,
        window_s: float,
        publish: EventSink | None = None,
        undelivered: EventSink | None = None,
        catch_up_timeout_s: float = 300.0,
        now: datetime | None = None,
    ) -> WindowedGraphStore:
        """A window over ``<prefix>graph-changelog`` from produce time ``now - window_s``,
        caught up to the end of the topic before this returns (the replica is then ready)."""
        start = (now or datetime.now(UTC)) - timedelta(seconds=window_s)
        topic = prefix + GRAPH_CHANGELOG
        window = WindowGraph(window_s, horizon=asyncio.run(complete_since(bootstrap, topic, start)))
        follower = ChangelogFollower(
            bootstrap, prefix, graph=window, features=SeenOnlyFeatures(), start=start
        )
        thread = ChangelogThread(follower, catch_up_timeout_s)
        thread.start()
        return cls(window, durable, publish, thread, undelivered)

    def not_ready(self) -> list[str]:
        """Why this replica should take no traffic now (empty: ready): its changelog follower
        stopped, so the window no longer sees what other replicas and the worker fuse."""
        f = self.follower
        return [] if f is None or f.running else ["graph changelog follower stopped"]

    # -- writes ---------------------------------------------------------------------------------
    def _fuse(self, event: AnyEvent) -> None:
        self.window.add(event)
        if self.publisher is None:
            return
        with self._publish_lock:
            record = to_record(event)
            try:
                self.publisher.send(record)
            except Exception as exc:
                self._not_published([record], exc)

    def _not_published(self, records: list[Any], exc: BaseException) -> None:
        """Count, log and dead-letter events this replica fused but could not publish."""
        self.publish_failures += len(records)
        for record in records:
            log.error("event %s not published (%r); the window has it", record.get("event_id"), exc)
            if self.undelivered is not None:  # kept for a replay: nothing is lost
                self.undelivered.send(
                    {
                        "topic": TOPICS[record["type"]],
                        "field": "",
                        "reason": f"fused into this replica's window but not published "
                        f"to Kafka for the workers: {exc!r}",
                        "value": record,
                        "rejected_at": datetime.now(UTC).isoformat(),
                    }
                )

    def _add_payment(self, e: Payment) -> None:
        self._fuse(e)

    def _add_device(self, e: DeviceEvent) -> None:
        self._fuse(e)

    def _add_social(self, e: SocialEvent) -> None:
        self._fuse(e)

    def _add_label(self, e: LabelEvent) -> None:
        self._fuse(e)

    def flush(self) -> None:
        """Return once every event published so far is acknowledged or dead-lettered."""
        if self.publisher is not None:
            with self._publish_lock:
                self.publisher.flush()

    # -- reads ----------------------------------------------------------------------------------
    def route(self, q: Payment, horizon: float) -> str:
        """Why ``q`` is sampled where it is: :data:`IN_WINDOW` or a fallback reason."""
        t = q.ts
        if t <= horizon:
            return BEFORE_HORIZON
        if not all(self.window.knows_before(key, t) for key in own_entities(q)):
            return UNSEEN_ENTITY
        return IN_WINDOW

    def _sample(self, queries: Sequence[Payment], fanouts: tuple[int, ...]) -> list[Subgraph]:
        window = self.window
        with window.lock:  # route and sample against one state of the window
            if self.durable is None:
                routes = [IN_WINDOW] * len(queries)
            else:
                routes = [self.route(q, window.horizon) for q in queries]
            near = [q for q, r in zip(queries, routes, strict=True) if r == IN_WINDOW]
            from_window = iter(window.sample(near, fanouts) if near else [])
            self.samples.update(routes)
        far = [q for q, r in zip(queries, routes, strict=True) if r != IN_WINDOW]
        from_durable = iter(self._sample_durable(far, fanouts) if far else [])
        return [next(from_window if r == IN_WINDOW else from_durable) for r in routes]

    def _sample_durable(self, queries: list[Payment], fanouts: tuple[int, ...]) -> list[Subgraph]:
        assert self.durable is not None  # routed here only when there is one
        try:
            return self.durable.sample(queries, fanouts)
        except Exception:
            # A score must still be answered: the window's view is the best one left.
            with self.window.lock:
                self.samples[DURABLE_UNAVAILABLE] += len(queries)
            log.exception(
                "durable graph store unavailable; %d queries sampled from the window", len(queries)
            )
            return self.window.sample(queries, fanouts)

    def _transaction(self, transaction_id: str) -> TxnRecord | None:
        rec = self.window.transaction(transaction_id)
        if rec is None and self.durable is not None:
            return self.durable.transaction(transaction_id)
        return rec

    def _label(self, transaction_id: str, as_of: float) -> int:
        if self.durable is None or self.window.holds(transaction_id):
            return self.window.label(transaction_id, as_of)
        return self.durable.label(transaction_id, as_of)

    def _labels_for(self, transaction_ids: list[str]) -> dict[str, list[StoredLabel]]:
        out = self.window.labels_for(transaction_ids)
        if self.durable is not None:
            elsewhere = [t for t in transaction_ids if not self.window.holds(t)]
            if elsewhere:
                out.update(self.durable.labels_for(elsewhere))
        return out

    def _evict_before(self, ts: float) -> int:
        """Explicit housekeeping: forget before ``ts`` in the window *and* the durable store,
        so no fallback brings the edges back. Returns the window's count. (Nothing on the
        scoring path calls this: the window slides by itself, Neo4j's retention is the
        workers'.)"""
        dropped = self.window.evict_before(ts)
        if self.durable is not None:
            self.durable.evict_before(ts)
        return dropped

    def stats(self) -> dict[str, int]:
        """The window's counts (the durable store's would cost a scan per call)."""
        return self.window.stats()

    def close(self) -> None:
        """Stop the follower, flush what was published, close the durable store."""
        try:
            if self.follower is not None:
                self.follower.close()
            if self.publisher is not None:
                self.publisher.close()
        finally:
            if self.durable is not None:
                self.durable.close()


def own_entities(q: Payment) -> Iterator[NodeKey]:
    """The entities a query payment links to itself (hop 1 of every sample)."""
    yield ACCOUNT, q.account_id
    yield CARD, q.card_id
    yield MERCHANT, q.merchant_id
    if q.device_id is not None:
        yield DEVICE, q.device_id
    if q.ip is not None:
        yield IP, q.ip


class WindowMetrics(Collector):
    """Prometheus view of a :class:`WindowedGraphStore`, read at scrape time.

    * ``riskgraph_graph_samples_total{source, reason}`` – query payments sampled from the
      ``window`` (reason ``in_window``) or from the ``durable`` store (``before_horizon``,
      ``unseen_entity``); ``durable_unavailable``: routed to a durable store that failed,
      answered from the window instead;
    * ``riskgraph_graph_window_horizon_seconds`` – event time the window is complete from;
    * ``riskgraph_graph_changelog_applied_total``, ``riskgraph_graph_changelog_lag_ms`` (the
      latest source produce → visible here), ``riskgraph_graph_changelog_up`` (1 while the
      follower runs), ``riskgraph_graph_publish_failures_total``.
    """

    def __init__(self, store: WindowedGraphStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        s = self.store
        samples = CounterMetricFamily(
            "riskgraph_graph_samples",
            "Query payments sampled, by where (window or durable fallback) and why",
            labels=["source", "reason"],
        )
        for reason in REASONS:
            source = "window" if reason == IN_WINDOW else "durable"
            samples.add_metric([source, reason], s.samples[reason])
        samples.add_metric(["window", DURABLE_UNAVAILABLE], s.samples[DURABLE_UNAVAILABLE])
        yield samples
        yield GaugeMetricFamily(
            "riskgraph_graph_window_horizon_seconds",
            "Event time (POSIX s) from which the in-memory window is complete",
            value=s.window.horizon,
        )
        yield CounterMetricFamily(
            "riskgraph_graph_publish_failures",
            "Events fused here whose publish to Kafka failed",
            value=s.publish_failures,
        )
        thread = s.follower
        if thread is not None:
            f = thread.follower
            yield CounterMetricFamily(
                "riskgraph_graph_changelog_applied",
                "Changelog events applied to the window",
                value=f.applied,
            )
            yield GaugeMetricFamily(
                "riskgraph_graph_changelog_lag_ms",
                "Latest source produce → visible in the window (ms)",
                value=f.lags_ms[-1] if f.lags_ms else math.nan,
            )
            yield GaugeMetricFamily(
                "riskgraph_graph_changelog_up",
                "1 while the changelog follower runs",
                value=1.0 if thread.running else 0.0,
            )
