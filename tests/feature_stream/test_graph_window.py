"""WindowedGraphStore: the changelog window in front of Neo4j.

The window's own rules need no server; everything else runs against the real Neo4j and Kafka
from ``deploy/services.sh up kafka neo4j`` (a missing server fails these tests, never skips
them). Every test uses its own Neo4j namespace and Kafka topic prefix.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import CollectorRegistry, generate_latest

from feature_stream.event_io import EventSink
from feature_stream.events import parse_event, to_record
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_schema import ACCOUNT, TXN
from feature_stream.graph_store import GraphStore, Subgraph
from feature_stream.graph_window import (
    BEFORE_HORIZON,
    IN_WINDOW,
    UNSEEN_ENTITY,
    AnyEvent,
    WindowedGraphStore,
    WindowGraph,
    WindowMetrics,
    complete_since,
)
from feature_stream.kafka_io import (
    GRAPH_CHANGELOG,
    KafkaEventSink,
    KafkaEventSource,
    all_topics,
    ensure_topics,
)
from tests.factories import label, login, payment, ts
from tests.feature_stream.graph_store_contract import GraphStoreContract, canonical
from tests.feature_stream.test_graph_neo4j import (  # noqa: F401 - fixtures used by name
    Namespaces,
    namespaces,
    neo4j_driver,
    queries_for,
    random_stream,
)
from tests.services_up import require

integration = pytest.mark.integration
BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
DAY = 86400.0
YEAR = 365 * DAY


class WorkerInProcess(EventSink):
    """What the stream worker does with a published event, done at once: write it to the
    durable store. Lets the (synchronous) contract suite see the fallback path's data."""

    def __init__(self, durable: GraphStore) -> None:
        self.durable = durable

    def send(self, record: dict[str, Any]) -> None:
        self.durable.add(parse_event(record))


@integration
class TestWindowedGraphStoreContract(GraphStoreContract):
    """Window + Neo4j behind it: queries on entities the window has not seen before ``t`` go
    to Neo4j (several tests here do), the others are answered by the window."""

    @pytest.fixture(autouse=True)
    def _namespaces(self, namespaces: Namespaces) -> None:  # noqa: F811 - the fixture
        self.namespaces = namespaces

    def make_store(self) -> GraphStore:
        durable = self.namespaces.store()
        return WindowedGraphStore(WindowGraph(YEAR), durable, publish=WorkerInProcess(durable))


# -- the window on its own ----------------------------------------------------------------------
def test_the_window_slides_and_keeps_only_what_it_holds_completely() -> None:
    w = WindowGraph(window_s=10 * DAY)
    w.add(payment("p0", 0, account="a", card="c", merchant="m"))
    assert w.horizon == ts(0) - 10 * DAY  # first sweep: complete from 10 days before the start
    w.add(payment("p1", 12 * DAY, account="a", card="c", merchant="m"))
    assert w.horizon == ts(2 * DAY)  # slid: p0 is gone, the window starts at day 2
    assert w.transaction("p0") is None
    assert w.transaction("p1") is not None
    w.add(payment("late", 1 * DAY, account="b", card="c", merchant="m"))  # older than the horizon
    assert w.transaction("late") is None
    assert w.dropped == 1
    assert not w.knows_before((ACCOUNT, "b"), ts(20 * DAY))
    assert w.knows_before((ACCOUNT, "a"), ts(13 * DAY))
    assert not w.knows_before((ACCOUNT, "a"), ts(12 * DAY))  # strictly before
    # A label of a payment outside the window is dropped; one of a payment inside it is kept.
    w.add(label("l-old", 1 * DAY, txn=payment("p0", 0)))
    w.add(label("l-new", 13 * DAY, txn=payment("p1", 12 * DAY)))
    assert set(w.labels_for(["p0", "p1"])) == {"p1"}
    assert w.dropped == 2


def test_a_window_without_a_durable_store_answers_everything() -> None:
    store = WindowedGraphStore(WindowGraph(YEAR, horizon=ts(100)))
    store.add(payment("p", 200, account="a", card="c", merchant="m"))
    (g,) = store.sample([payment("q", 50, account="x", card="y", merchant="z")], (15, 10))
    assert g.num_nodes == 4  # the query and its own entities: nothing else is known
    assert store.samples[IN_WINDOW] == 1


# -- routing against Neo4j ---------------------------------------------------------------------
def _txns(g: Subgraph) -> set[str]:
    return {g.node_id[i] for i in range(1, g.num_nodes) if g.node_type[i] == TXN}


@integration
def test_an_entity_active_only_before_the_horizon_is_sampled_from_neo4j(
    namespaces: Namespaces,  # noqa: F811 - the fixture
) -> None:
    durable = namespaces.store()
    history: list[AnyEvent] = [
        # "old" paid on days 0-1 only; "recent" on days 9-10; all at the same merchant.
        *(payment(f"o{k}", k * 3600, account="old", card="c-old", merchant="m") for k in range(5)),
        login("l-old", 7200, account="old", device="d-old"),
        *(
            payment(f"r{k}", 9 * DAY + k * 3600, account="recent", card="c-rec", merchant="m")
            for k in range(5)
        ),
    ]
    durable.add_many(history)  # the worker wrote everything to Neo4j
    window = WindowGraph(window_s=5 * DAY)
    for e in history:  # the changelog fed the window; it slid past days 0-1
        window.add(e)
    store = WindowedGraphStore(window, durable)
    try:
        assert ts(1 * DAY) < window.horizon < ts(9 * DAY)
        t = 10 * DAY
        q_in = payment("q-in", t, account="recent", card="c-rec", merchant="m")
        q_old = payment("q-old", t + 60, account="old", card="c-old", merchant="m")
        q_past = payment("q-past", 1.5 * DAY, account="old", card="c-old", merchant="m")
        assert [store.route(q, window.horizon) for q in (q_in, q_old, q_past)] == [
            IN_WINDOW,
            UNSEEN_ENTITY,
            BEFORE_HORIZON,
        ]
        g_in, g_old, g_past = store.sample([q_in, q_old, q_past], (15, 10))
        assert dict(store.samples) == {IN_WINDOW: 1, UNSEEN_ENTITY: 1, BEFORE_HORIZON: 1}
        # The old account's payments exist only in Neo4j: found through the fallback ...
        assert {f"o{k}" for k in range(5)} <= _txns(g_old)
        assert _txns(window.sample([q_old], (15, 10))[0]).isdisjoint({f"o{k}" for k in range(5)})
        # ... which is Neo4j's own answer; the window answers the recent account's query.
        assert canonical(g_old) == canonical(durable.sample([q_old], (15, 10))[0])
        assert canonical(g_past) == canonical(durable.sample([q_past], (15, 10))[0])
        assert canonical(g_in) == canonical(window.sample([q_in], (15, 10))[0])
        assert {f"r{k}" for k in range(5)} <= _txns(g_in)
        registry = CollectorRegistry()
        registry.register(WindowMetrics(store))
        text = generate_latest(registry).decode()
        assert 'riskgraph_graph_samples_total{reason="unseen_entity",source="durable"} 1.0' in text
        assert 'riskgraph_graph_samples_total{reason="in_window",source="window"} 1.0' in text
    finally:
        store.close()


@integration
def test_with_the_whole_stream_in_the_window_every_route_agrees_with_neo4j(
    namespaces: Namespaces,  # noqa: F811 - the fixture
) -> None:
    events = random_stream(11)
    durable = namespaces.store()
    durable.add_many(events)
    window = WindowGraph(YEAR)
    memory = InMemoryGraphStore()
    for e in events:
        window.add(e)
        memory.add(e)
    store = WindowedGraphStore(window, durable)
    try:
        queries = queries_for(events, 11, n=40)
        got = store.sample(queries, (15, 10))
        want = durable.sample(queries, (15, 10))
        assert [canonical(g) for g in got] == [canonical(g) for g in want]
        assert [canonical(g) for g in got] == [
            canonical(g) for g in memory.sample(queries, (15, 10))
        ]
        assert store.samples[IN_WINDOW] > 0 and store.samples[UNSEEN_ENTITY] > 0
    finally:
        store.close()


# -- the changelog and Kafka --------------------------------------------------------------------
@pytest.fixture(scope="module")
def kafka() -> None:
    require("kafka")  # a missing server fails the test, never skips it


def _publish_to_changelog(prefix: str, events: list[Any]) -> None:
    sink = KafkaEventSink(BOOTSTRAP, prefix + GRAPH_CHANGELOG)
    try:
        for e in events:
            sink.send(to_record(e))
    finally:
        sink.close()


@integration
def test_open_catches_up_with_the_changelog_then_follows_it_and_publishes_writes(
    kafka: None,
) -> None:
    prefix = f"t-window-{uuid.uuid4().hex[:8]}-"
    asyncio.run(ensure_topics(BOOTSTRAP, all_topics(prefix)))
    history = random_stream(5, n=300)
    _publish_to_changelog(prefix, history)
    reference = InMemoryGraphStore()
    reference.add_many(history)

    publish = KafkaEventSink(BOOTSTRAP, prefix=prefix)
    store = WindowedGraphStore.open(
        BOOTSTRAP, prefix, durable=None, window_s=YEAR, publish=publish, catch_up_timeout_s=60
    )
    thread = store.follower
    try:
        # Ready means caught up: the whole changelog is in the window (read from offset 0, so
        # nothing is taken as incomplete: the horizon lies a window's length back).
        assert store.window.horizon < min(e.ts for e in history)
        assert store.window.dropped == 0
        assert store.stats() == reference.stats()
        assert thread is not None and thread.running
        # Then it follows: an event the worker publishes now shows up.
        later = payment("later", 40 * DAY, account="a1", card="c1", merchant="m1")
        _publish_to_changelog(prefix, [later])
        deadline = time.monotonic() + 20
        while store.transaction("later") is None:
            assert time.monotonic() < deadline, "the changelog event never reached the window"
            time.sleep(0.1)
        # A write here is visible at once and goes to the payments topic for the workers.
        mine = payment("scored-here", 41 * DAY, account="a1", card="c1", merchant="m1")
        store.add(mine)
        assert store.transaction("scored-here") is not None
        store.flush()
        published = KafkaEventSource(BOOTSTRAP, [prefix + "payments"], idle_timeout_s=2.0)
        assert [r.value["event_id"] for r in published] == ["scored-here"]
        registry = CollectorRegistry()
        registry.register(WindowMetrics(store))
        text = generate_latest(registry).decode()
        assert "riskgraph_graph_changelog_up 1.0" in text
        assert f"riskgraph_graph_changelog_applied_total {len(history) + 1}.0" in text
    finally:
        store.close()
    assert thread is not None and not thread.running


@integration
def test_the_start_horizon_is_minus_infinity_only_when_nothing_was_skipped(kafka: None) -> None:
    prefix = f"t-horizon-{uuid.uuid4().hex[:8]}-"
    asyncio.run(ensure_topics(BOOTSTRAP, all_topics(prefix)))
    topic = prefix + GRAPH_CHANGELOG
    _publish_to_changelog(prefix, random_stream(6, n=20))
    past = datetime.now(UTC) - timedelta(days=7)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert asyncio.run(complete_since(BOOTSTRAP, topic, past)) == -math.inf
    # Starting after every record skips them all: complete only from the start time on.
    assert asyncio.run(complete_since(BOOTSTRAP, topic, future)) == future.timestamp()


def test_labels_of_payments_outside_the_window_are_looked_up_in_the_durable_store() -> None:
    durable = InMemoryGraphStore()  # any GraphStore can stand behind the window
    old = payment("old", 0, account="a", card="c", merchant="m")
    durable.add_many([old, label("l-old", 60, txn=old)])
    store = WindowedGraphStore(WindowGraph(YEAR, horizon=ts(100)), durable)
    assert store.transaction("old") == durable.transaction("old")
    assert store.labels_for(["old"]) == durable.labels_for(["old"])
    assert store.label("old", ts(61)) == durable.label("old", ts(61))


class Unreachable(EventSink):
    """A publisher that refuses at once: every send raises (the Kafka sink's later failures
    are the real broker's, in the integration test below)."""

    def send(self, record: dict[str, Any]) -> None:
        raise ConnectionError("broker unreachable")


def test_an_event_that_cannot_be_published_is_kept_as_a_dead_letter() -> None:
    from feature_stream.event_io import InMemoryEventSink

    undelivered = InMemoryEventSink()
    store = WindowedGraphStore(
        WindowGraph(YEAR), None, publish=Unreachable(), undelivered=undelivered
    )
    p = payment("p-lost", 10, account="a", card="c", merchant="m")
    store.add(p)
    assert store.transaction("p-lost") is not None  # the window still has it
    assert store.publish_failures == 1
    (dead,) = undelivered.records
    assert dead["topic"] == "payments"
    assert "not published" in dead["reason"] and "broker unreachable" in dead["reason"]
    assert parse_event(dead["value"]) == p  # replayable as it was


async def _topic_refusing_records_over(topic: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_bytes)}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
    finally:
        await admin.close()


@integration
def test_events_the_broker_refuses_after_send_returned_are_kept_as_dead_letters(
    kafka: None,
) -> None:
    # Kafka reports a failed delivery only after send() returned: here the real broker
    # refuses every batch on the payments topic (too large for it), later than the send.
    prefix = f"t-refused-{uuid.uuid4().hex[:8]}-"
    asyncio.run(_topic_refusing_records_over(prefix + "payments", 64))
    asyncio.run(ensure_topics(BOOTSTRAP, all_topics(prefix)))
    from feature_stream.event_io import InMemoryEventSink

    undelivered = InMemoryEventSink()
    publish = KafkaEventSink(BOOTSTRAP, prefix=prefix)
    store = WindowedGraphStore(WindowGraph(YEAR), None, publish=publish, undelivered=undelivered)
    refused = [payment(f"p-{i}", 10 + i, account="a", card="c", merchant="m") for i in range(3)]
    delivered = login("dev-1", 20, account="a", device="d")
    try:
        for p in refused:
            store.add(p)
        store.add(delivered)
        store.flush()  # returns: the failures were dead-lettered, not raised
        assert all(store.transaction(p.event_id) is not None for p in refused)  # window has them
        assert store.publish_failures == 3
        assert sorted(parse_event(d["value"]).event_id for d in undelivered.records) == [
            "p-0",
            "p-1",
            "p-2",
        ]
        assert all(d["topic"] == "payments" for d in undelivered.records)
        assert all("MessageSizeTooLarge" in d["reason"] for d in undelivered.records)
        on_topic = KafkaEventSource(BOOTSTRAP, [prefix + "device-events"], idle_timeout_s=2.0)
        assert [r.value["event_id"] for r in on_topic] == [delivered.event_id]
    finally:
        store.close()


@integration
def test_events_refused_while_the_store_closes_are_dead_letters_too(kafka: None) -> None:
    prefix = f"t-refused-{uuid.uuid4().hex[:8]}-"
    asyncio.run(_topic_refusing_records_over(prefix + "payments", 64))
    from feature_stream.event_io import InMemoryEventSink

    undelivered = InMemoryEventSink()
    publish = KafkaEventSink(BOOTSTRAP, prefix=prefix)
    store = WindowedGraphStore(WindowGraph(YEAR), None, publish=publish, undelivered=undelivered)
    store.add(payment("p-last", 10, account="a", card="c", merchant="m"))
    store.close()  # no flush first: the close waits for the batch and reports it
    assert [parse_event(d["value"]).event_id for d in undelivered.records] == ["p-last"]
    assert store.publish_failures == 1


@integration
def test_without_a_handler_the_kafka_sink_raises_once_every_batch_is_done(kafka: None) -> None:
    topic = f"t-refused-{uuid.uuid4().hex[:8]}"
    asyncio.run(_topic_refusing_records_over(topic, 64))
    sink = KafkaEventSink(BOOTSTRAP, topic)
    try:
        sink.send_many([(topic, "a", {"n": i}) for i in range(3)])  # one batch
        with pytest.raises(MessageSizeTooLargeError) as err:
            sink.flush()
        assert err.value.__notes__ == ["3 record(s) in 1 batch(es) not delivered"]
        sink.flush()  # nothing left in flight: the failures were reported once
    finally:
        sink.close()
