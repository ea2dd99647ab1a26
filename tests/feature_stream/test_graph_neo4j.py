"""Neo4jGraphStore against a real Neo4j: the GraphStore contract, then parity with the in-memory
store on random streams (same subgraphs node for node, same stats, same evictions).

Needs the server from ``deploy/services.sh up neo4j`` (``RISKGRAPH_NEO4J_URI``, default
``bolt://127.0.0.1:7687``); a missing server fails these tests, it never skips them. Every store
gets a fresh random namespace, deleted after the test.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator

import pytest
from neo4j import Driver, GraphDatabase

from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_neo4j import Neo4jGraphStore, delete_namespace
from feature_stream.graph_store import GraphStore, Subgraph
from tests.factories import label, link, login, payment, ts
from tests.feature_stream.graph_store_contract import GraphStoreContract, canonical

pytestmark = pytest.mark.integration

AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent
URI = os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687")


@pytest.fixture(scope="session")
def neo4j_driver() -> Iterator[Driver]:
    driver = GraphDatabase.driver(URI, auth=None)
    try:
        driver.verify_connectivity()
    except Exception as exc:  # any failure to reach the server is a test failure
        driver.close()
        pytest.fail(
            f"Neo4j is not reachable at {URI} ({exc}); start it with deploy/services.sh up neo4j"
        )
    yield driver
    driver.close()


class Namespaces:
    """Hands out fresh namespaces and deletes them all at the end."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.used: list[str] = []

    def store(self, **kw: object) -> Neo4jGraphStore:
        ns = f"test-{uuid.uuid4().hex[:12]}"
        self.used.append(ns)
        return Neo4jGraphStore(URI, namespace=ns, **kw)  # type: ignore[arg-type]

    def drop(self) -> None:
        for ns in self.used:
            delete_namespace(self.driver, ns)


@pytest.fixture
def namespaces(neo4j_driver: Driver) -> Iterator[Namespaces]:
    n = Namespaces(neo4j_driver)
    yield n
    n.drop()


class TestNeo4jGraphStoreContract(GraphStoreContract):
    @pytest.fixture(autouse=True)
    def _namespaces(self, namespaces: Namespaces) -> None:
        self.namespaces = namespaces

    def make_store(self) -> GraphStore:
        return self.namespaces.store()


# -- parity with the in-memory store ----------------------------------------------------------
def random_stream(seed: int, n: int = 600, span: float = 20 * 86400.0) -> list[AnyEvent]:
    """Payments, logins, social links and labels over a small population, so entities repeat,
    hubs form and times tie; shuffled a little so some events arrive late."""
    rng = random.Random(seed)
    accounts = [f"a{i}" for i in range(40)]
    cards = [f"c{i}" for i in range(50)]
    merchants = [f"m{i}" for i in range(8)]  # few merchants: hubs
    devices = [f"d{i}" for i in range(25)]
    ips = [f"10.0.{i // 250}.{i % 250}" for i in range(20)]
    times = sorted(round(rng.uniform(0, span)) for _ in range(n))  # whole seconds: ties
    events: list[AnyEvent] = []
    pays: list[Payment] = []
    for i, t in enumerate(times):
        kind = rng.random()
        if kind < 0.6 or not pays:
            p = payment(
                f"p{i}",
                t,
                account=rng.choice(accounts),
                card=rng.choice(cards),
                merchant=rng.choice(merchants),
                amount=round(rng.uniform(1, 500), 2),
                device=rng.choice(devices) if rng.random() < 0.7 else None,
                ip=rng.choice(ips) if rng.random() < 0.6 else None,
                channel=rng.choice(("card_present", "ecommerce", "p2p")),
            )
            pays.append(p)
            events.append(p)
        elif kind < 0.8:
            events.append(
                login(
                    f"l{i}",
                    t,
                    account=rng.choice(accounts),
                    device=rng.choice(devices),
                    ip=rng.choice(ips) if rng.random() < 0.5 else None,
                )
            )
        elif kind < 0.92:
            src, dst = rng.sample(accounts, 2)
            k = rng.choice(("p2p_transfer", "contact", "shared_phone", "shared_address"))
            amount = 25.0 if k == "p2p_transfer" else None
            events.append(link(f"s{i}", t, src=src, dst=dst, kind=k, amount=amount))
        else:
            p = rng.choice(pays)
            delay = rng.choice((0.0, 3600.0, 86400.0, 5 * 86400.0))
            events.append(label(f"lb{i}", t + delay, txn=p, fraud=rng.random() < 0.5))
    for _ in range(n // 20):  # late arrivals: an event overtakes a few earlier ones
        j = rng.randrange(10, len(events))
        events.insert(j - rng.randint(1, 10), events.pop(j))
    return events


def queries_for(events: list[AnyEvent], seed: int, n: int = 25, tail: float = 1.0) -> list[Payment]:
    """Query payments on entities the stream uses, at times across its last ``tail`` fraction."""
    rng = random.Random(seed)
    pays = [e for e in events if isinstance(e, Payment)]
    pays = pays[int(len(pays) * (1 - tail)) :]
    out = []
    for k in range(n):
        p = rng.choice(pays)
        when = p.event_time.timestamp() - ts(0) + rng.choice((-7200.0, 0.0, 1.0, 86400.0))
        out.append(
            payment(
                f"q{k}" if k % 5 else p.event_id,  # every fifth replays a stored payment
                when,
                account=p.account_id,
                card=p.card_id,
                merchant=p.merchant_id,
                device=p.device_id,
                ip=p.ip,
                amount=p.amount,
                channel=p.channel,
            )
        )
    return out


def node_set(g: Subgraph) -> set[tuple[int, str, tuple[float, ...], int]]:
    return {
        (g.node_type[i], g.node_id[i], g.node_attr[i], g.node_hop[i]) for i in range(g.num_nodes)
    }


def edge_set(g: Subgraph) -> set[tuple[str, str, int, float]]:
    return {
        (g.node_id[s], g.node_id[d], r, e)
        for s, d, r, e in zip(g.src, g.dst, g.rel, g.edge_ts, strict=True)
    }


def assert_same(mem: GraphStore, neo: GraphStore, queries: list[Payment]) -> None:
    assert neo.stats() == mem.stats()
    for fanouts in ((15, 10), (3, 2, 2), (50,)):
        expected = mem.sample(queries, fanouts)
        got = neo.sample(queries, fanouts)
        for a, b in zip(expected, got, strict=True):
            assert node_set(b) == node_set(a)
            assert edge_set(b) == edge_set(a)
            assert b.max_time_used == a.max_time_used
            assert canonical(b) == canonical(a)
            assert b == a  # same BFS order too
    for q in queries:
        assert neo.transaction(q.event_id) == mem.transaction(q.event_id)
        assert neo.label(q.event_id, q.event_time.timestamp()) == mem.label(
            q.event_id, q.event_time.timestamp()
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_random_stream_samples_like_the_in_memory_store(namespaces: Namespaces, seed: int) -> None:
    events = random_stream(seed)
    mem = InMemoryGraphStore()
    neo = namespaces.store(batch_size=97)  # batches cut through the stream anywhere
    try:
        mem.add_many(events)
        neo.add_many(events)
        assert_same(mem, neo, queries_for(events, seed))
        neo.add_many(events[: len(events) // 2])  # a replay changes nothing
        assert_same(mem, neo, queries_for(events, seed + 100, n=5))
        cut = ts(10 * 86400.0)
        assert neo.evict_before(cut) == mem.evict_before(cut)
        assert_same(mem, neo, queries_for(events, seed + 200))
    finally:
        neo.close()


def test_retention_and_degree_cap_match_the_in_memory_store(namespaces: Namespaces) -> None:
    events = random_stream(3, n=500)
    bounds = {"retention_s": 3 * 86400.0, "max_degree": 6}
    mem = InMemoryGraphStore(**bounds)  # type: ignore[arg-type]
    neo = namespaces.store(batch_size=50, **bounds)
    try:
        for i in range(0, len(events), 120):  # several add_many calls, as a worker would
            mem.add_many(events[i : i + 120])
            neo.add_many(events[i : i + 120])
        assert_same(mem, neo, queries_for(events, 3, tail=0.15))
    finally:
        neo.close()


def test_concurrent_writers_of_one_namespace(namespaces: Namespaces) -> None:
    """Two workers (partitioned by account, as Kafka does) share hub merchants: Neo4j's deadlock
    detection makes one of them retry, and the graph still ends up complete."""
    events = random_stream(4, n=600)
    first = namespaces.store(batch_size=40)
    second = Neo4jGraphStore(URI, namespace=first.namespace, batch_size=40)
    errors: list[BaseException] = []

    def work(store: Neo4jGraphStore, part: list[AnyEvent]) -> None:
        try:
            store.add_many(part)
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    parts = [[e for e in events if int(e.key[1:]) % 2 == i] for i in range(2)]
    pairs = zip((first, second), parts, strict=True)
    threads = [threading.Thread(target=work, args=pair) for pair in pairs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        mem = InMemoryGraphStore()
        mem.add_many(events)
        assert first.stats() == mem.stats()
        for e in events:
            if isinstance(e, Payment):
                assert first.transaction(e.event_id) == mem.transaction(e.event_id)
    finally:
        first.close()
        second.close()


def test_namespaces_do_not_see_each_other(namespaces: Namespaces) -> None:
    a, b = namespaces.store(), namespaces.store()
    try:
        a.add(payment("p", 1, account="x", card="y", merchant="z"))
        assert b.transaction("p") is None
        assert b.stats()["edges"] == 0
        (g,) = b.sample([payment("q", 10, account="x", card="y", merchant="z")], (5,))
        assert (g.num_nodes, g.num_edges) == (4, 3)  # the query and its own entities only
        assert g.node_attr[1:] == [(0.0, -1.0, 0.0, 0.0)] * 3
        assert a.stats()["edges"] == 3
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    "kw", [{"namespace": ""}, {"retention_s": 0.0}, {"max_degree": 0}, {"batch_size": 0}]
)
def test_constructor_validates(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Neo4jGraphStore(URI, **kw)  # type: ignore[arg-type]
