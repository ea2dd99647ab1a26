"""InMemoryGraphStore: the GraphStore contract, plus its retention window and degree cap."""

from __future__ import annotations

import pytest

from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_schema import ACCOUNT, TXN
from feature_stream.graph_store import GraphStore
from tests.factories import payment, ts
from tests.feature_stream.graph_store_contract import GraphStoreContract, node_index


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
    """Evicting everything must leave zero edges, however many the degree cap dropped.

    Currently fails: ``_Adjacency.add`` drops capped half-edges without decrementing
    ``InMemoryGraphStore._edges``, and ``_evict_before`` then halves an odd half-edge total.
    """
    store = InMemoryGraphStore(max_degree=5)
    for k in range(8):
        store.add(payment(f"p{k}", k, account="a", card=f"c{k}", merchant=f"m{k}"))
    store.evict_before(ts(1000))
    assert store.stats()["edges"] == 0


@pytest.mark.parametrize(("retention_s", "max_degree"), [(0.0, 10), (-1.0, 10), (10.0, 0)])
def test_constructor_validates(retention_s: float, max_degree: int) -> None:
    with pytest.raises(ValueError):
        InMemoryGraphStore(retention_s=retention_s, max_degree=max_degree)
