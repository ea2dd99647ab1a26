"""InMemoryGraphStore: the GraphStore contract, plus its retention window and degree cap."""

from __future__ import annotations

import math
import pickle

import pytest

from feature_stream.events import Payment
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_schema import ACCOUNT, MERCHANT, TXN
from feature_stream.graph_store import GraphStore
from tests.factories import link, payment, ts
from tests.feature_stream.graph_store_contract import GraphStoreContract, canonical, node_index
from tests.feature_stream.test_graph_neo4j import random_stream


class TestInMemoryGraphStoreContract(GraphStoreContract):
    def make_store(self) -> GraphStore:
        return InMemoryGraphStore()


def sampled_txns(store: GraphStore, t: float, account: str) -> set[str]:
    (g,) = store.sample([payment("q", t, account=account, card="qc", merchant="qm")], (100,))
    return {g.node_id[i] for i in range(1, g.num_nodes) if g.node_type[i] == TXN}


def test_retention_sweep_drops_edges_older_than_the_window() -> None:
    store = InMemoryGraphStore(retention_s=100.0)
    store.add(payment("old", 0, account="a", card="c0", merchant="m0"))
    store.add(payment("recent", 950, account="a", card="c1", merchant="m1"))
    store.add(payment("new", 1000, account="a", card="c2", merchant="m2"))
    assert store.transaction("old") is None
    assert store.transaction("recent") is not None
    assert store.stats()["edges"] == 2 * 3
    assert sampled_txns(store, 1001, "a") == {"recent", "new"}


def test_retention_keeps_everything_inside_the_window() -> None:
    store = InMemoryGraphStore(retention_s=100.0)
    for k in range(0, 100, 10):
        store.add(payment(f"p{k}", k, account="a", card=f"c{k}", merchant="m"))
    assert store.stats()["edges"] == 10 * 3
    assert sampled_txns(store, 100, "a") == {f"p{k}" for k in range(0, 100, 10)}


def test_max_degree_keeps_the_most_recent_edges_per_node() -> None:
    store = InMemoryGraphStore(max_degree=5)
    for k in range(8):
        store.add(payment(f"p{k}", k, account="a", card=f"c{k}", merchant=f"m{k}"))
    assert sampled_txns(store, 100, "a") == {f"p{k}" for k in range(3, 8)}
    (g,) = store.sample([payment("q", 100, account="a", card="qc", merchant="qm")], (1,))
    assert g.node_attr[node_index(g)[(ACCOUNT, "a")]][0] == 5.0


def test_max_degree_cap_keeps_edge_count_consistent() -> None:
    """Evicting everything must leave zero edges, however many the degree cap dropped (the
    cap's dropped half-edges are counted out, so eviction cannot halve an odd total)."""
    store = InMemoryGraphStore(max_degree=5)
    for k in range(8):
        store.add(payment(f"p{k}", k, account="a", card=f"c{k}", merchant=f"m{k}"))
    store.evict_before(ts(1000))
    assert store.stats()["edges"] == 0


@pytest.mark.parametrize(("retention_s", "max_degree"), [(0.0, 10), (-1.0, 10), (10.0, 0)])
def test_constructor_validates(retention_s: float, max_degree: int) -> None:
    with pytest.raises(ValueError):
        InMemoryGraphStore(retention_s=retention_s, max_degree=max_degree)


def test_a_pickled_store_answers_as_the_original_and_a_long_chain_pickles() -> None:
    # 3,000 accounts in a chain of social links: pickling the linked nodes as they are would
    # recurse once per hop, far past Python's limit. Some edges fall out of a 5-day window.
    store = InMemoryGraphStore(retention_s=5 * 86400.0, max_degree=4)
    for k in range(3000):
        store.add(link(f"s{k}", k * 300.0, src=f"a{k}", dst=f"a{k + 1}"))
        if k % 7 == 0:
            store.add(payment(f"p{k}", k * 300.0 + 1, account=f"a{k}", card=f"c{k % 11}"))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.stats() == store.stats()
    queries = [payment(f"q{k}", 3000 * 300.0, account=f"a{k}") for k in range(2000, 3001, 50)]
    want = [canonical(g) for g in store.sample(queries, (4, 3))]
    assert [canonical(g) for g in copy.sample(queries, (4, 3))] == want
    assert sum(len(c[2]) for c in want) > 0  # the samples have edges
    # The copy goes on by itself: a new event changes it and not the original.
    copy.add(link("s-new", 3000 * 300.0 + 5, src="a2999", dst="b"))
    assert copy.stats()["edges"] == store.stats()["edges"] + 1


def full_scan_sweep(store: InMemoryGraphStore, cut: float) -> int:
    """The sweep as it was before the expiry heap: visit every node and every payment."""
    dropped, empty = 0, []
    for key, node in store._adj.items():
        if node.times and node.times[0] < cut:
            dropped += node.drop_before(cut)
            if not node.times:
                empty.append(key)
    for key in empty:
        del store._adj[key]
    for tid in [tid for tid, rec in store._txns.items() if rec.ts < cut]:
        del store._txns[tid]
        store._labels.pop(tid, None)
        gone = store._adj.get((TXN, tid))
        if gone is not None:
            gone.rec = None
    store._half_edges -= dropped
    return dropped // 2


def internals(store: InMemoryGraphStore) -> tuple[object, ...]:
    nodes = {
        key: (n.times, n.rels, [(m.type, m.id) for m in n.nbrs], n.rec)
        for key, n in store._adj.items()
    }
    return nodes, dict(store._txns), dict(store._labels), store._half_edges


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweeping_from_the_expiry_heap_drops_what_a_full_scan_drops(seed: int) -> None:
    # Late arrivals (an edge older than a node's oldest requeues it), hubs over the degree cap
    # (half edges), and cuts that drop nothing, a little, or most of the graph.
    events = random_stream(seed, n=900, span=30 * 86400.0)
    store = InMemoryGraphStore(retention_s=math.inf, max_degree=6)
    cuts = iter(ts(d * 86400.0) for d in (2.0, 2.0, 9.5, 10.0, 21.0, 40.0))
    for i, event in enumerate(events, 1):
        store.add(event)
        if i % 150 == 0:
            cut = next(cuts)
            reference = pickle.loads(pickle.dumps(store))
            assert store.evict_before(cut) == full_scan_sweep(reference, cut)
            assert internals(store) == internals(reference)
            assert all(n.times[0] >= cut for n in store._adj.values())
    assert store.stats()["edges"] == 0  # the last cut is past every event


def test_a_late_edge_older_than_a_nodes_oldest_is_swept() -> None:
    store = InMemoryGraphStore(retention_s=math.inf)
    store.add(payment("p1", 100, account="a", card="c1", merchant="m"))
    store.add(payment("p0", 10, account="a", card="c0", merchant="m"))  # arrives late
    assert store.evict_before(ts(50)) == 3
    assert store.transaction("p0") is None
    assert sampled_txns(store, 200, "a") == {"p1"}
    assert store.stats()["edges"] == 3


def _hub_stream() -> list[Payment]:
    """60 payments a minute apart at one merchant, from 6 accounts in turn."""
    return [
        payment(f"p{k}", 60.0 * k, account=f"a{k % 6}", card=f"c{k % 6}", merchant="hub")
        for k in range(60)
    ]


@pytest.mark.parametrize("t", [1200.0, 1230.0, 2400.0])
def test_a_replay_that_expects_its_queries_answers_as_online_past_the_degree_cap(t: float) -> None:
    events = _hub_stream()
    chunk_start = 1200.0
    online = InMemoryGraphStore(max_degree=5)
    for e in events:
        if e.ts < ts(t):
            online.add(e)
    replay, unwarned = InMemoryGraphStore(max_degree=5), InMemoryGraphStore(max_degree=5)
    for e in events:  # a chunk runs ahead of its queries: everything is ingested first
        if e.ts >= ts(chunk_start):
            replay.expect_queries_from(ts(chunk_start))
        replay.add(e)
        unwarned.add(e)
    q = [payment("q", t, account="a1", card="c1", merchant="hub")]
    fanouts = (4, 3)
    (want,) = online.sample(q, fanouts)
    assert canonical(replay.sample(q, fanouts)[0]) == canonical(want)
    # What the cap does without the hint: the hub's edges before t are gone for later ones.
    assert canonical(unwarned.sample(q, fanouts)[0]) != canonical(want)
    hub = node_index(want)[(MERCHANT, "hub")]
    assert want.node_attr[hub][0] == 5.0  # online, a node holds at most max_degree edges
