"""The contract every :class:`~feature_stream.graph_store.GraphStore` passes.

Subclass :class:`GraphStoreContract` in a ``test_*.py`` module and override :meth:`make_store` to
return a fresh, empty store; every test here then runs against that implementation::

    class TestInMemoryGraphStore(GraphStoreContract):
        def make_store(self) -> GraphStore:
            return InMemoryGraphStore()

Expected values are derived from the timeline each test builds, never from running a store.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.graph_schema import (
    ACCOUNT,
    CARD,
    CHANNEL_CODE,
    DEVICE,
    IP,
    MERCHANT,
    NODE_TYPES,
    RELATION_CODE,
    TXN,
)
from feature_stream.graph_store import (
    LABEL_FRAUD,
    LABEL_LEGIT,
    LABEL_UNKNOWN,
    GraphStore,
    StoredLabel,
    Subgraph,
    TxnRecord,
)
from tests.factories import label, link, login, payment, ts

AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent
NodeKey = tuple[int, str]


def node_index(g: Subgraph) -> dict[NodeKey, int]:
    """``(type, id) → local index``; fails if a node appears twice."""
    keys = list(zip(g.node_type, g.node_id, strict=True))
    assert len(set(keys)) == len(keys), f"duplicate nodes in subgraph: {keys}"
    return {k: i for i, k in enumerate(keys)}


def sources_into(g: Subgraph, dst: int) -> list[NodeKey]:
    """Keys of the nodes sampled from local node ``dst`` (one per edge)."""
    return [(g.node_type[s], g.node_id[s]) for s, d in zip(g.src, g.dst, strict=True) if d == dst]


def canonical(g: Subgraph) -> tuple[object, ...]:
    """The subgraph with local indices replaced by node keys (order-free)."""
    key = list(zip(g.node_type, g.node_id, strict=True))
    nodes = sorted((key[i], g.node_attr[i], g.node_hop[i]) for i in range(g.num_nodes))
    edges = sorted(
        (key[s], key[d], r, e) for s, d, r, e in zip(g.src, g.dst, g.rel, g.edge_ts, strict=True)
    )
    return (g.t, tuple(nodes), tuple(edges), g.max_time_used)


def mixed_history() -> list[AnyEvent]:
    """A little of everything: payments, logins, social links and labels, all before t=1000."""
    p1 = payment("p1", 10, account="a1", card="c1", merchant="m1", device="d1", ip="10.0.0.1")
    p2 = payment("p2", 20, account="a2", card="c2", merchant="m1", device="d1")
    p3 = payment("p3", 30, account="a1", card="c1", merchant="m2", amount=99.5, channel="p2p")
    return [
        p1,
        p2,
        p3,
        login("l1", 15, account="a3", device="d1", ip="10.0.0.2"),
        link("s1", 25, src="a1", dst="a3", kind="p2p_transfer", amount=5.0),
        link("s2", 26, src="a2", dst="a1", kind="shared_phone"),
        label("lb1", 40, txn=p2, fraud=True),
    ]


class GraphStoreContract:
    """Tests every graph store passes. Override :meth:`make_store`."""

    fanouts: tuple[int, ...] = (15, 10)

    def make_store(self) -> GraphStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Iterator[GraphStore]:
        s = self.make_store()
        yield s
        s.close()

    # -- writes -------------------------------------------------------------------------------
    def test_replaying_events_changes_nothing(self, store: GraphStore) -> None:
        history = mixed_history()
        query = payment("q", 1000, account="a1", card="c1", merchant="m1", device="d1")
        store.add_many(history)
        stats = store.stats()
        sample = store.sample([query], self.fanouts)
        store.add_many(history)
        for e in reversed(history):
            store.add(e)
        assert store.stats() == stats
        assert store.sample([query], self.fanouts) == sample

    def test_stats_count_nodes_per_type_and_edges(self, store: GraphStore) -> None:
        store.add(payment("p1", 1, account="a", card="c", merchant="m", device="d", ip="1.2.3.4"))
        store.add(login("l1", 2, account="a", device="d2", ip="1.2.3.5"))
        store.add(link("s1", 3, src="a", dst="b"))
        stats = store.stats()
        expected = {"transaction": 1, "account": 2, "card": 1, "merchant": 1, "device": 2, "ip": 2}
        assert {k: stats[k] for k in expected} == expected
        # payment: 5 links; login: device + ip; social: 1
        assert stats["edges"] == 5 + 2 + 1

    def test_add_rejects_non_events(self, store: GraphStore) -> None:
        with pytest.raises(TypeError):
            store.add({"type": "payment"})  # type: ignore[arg-type]

    # -- the query's own neighbourhood --------------------------------------------------------
    def test_query_is_node_zero_with_its_own_entities_at_hop_one(self, store: GraphStore) -> None:
        store.add_many(mixed_history())
        q = payment(
            "q",
            500,
            account="a1",
            card="c1",
            merchant="m9",
            device="d1",
            ip="10.0.0.9",
            amount=123.25,
            channel="card_present",
        )
        (g,) = store.sample([q], self.fanouts)
        t = ts(500)
        assert g.t == t
        assert (g.node_type[0], g.node_id[0], g.node_hop[0]) == (TXN, "q", 0)
        assert g.node_attr[0] == (
            123.25,
            0.0,
            float(LABEL_UNKNOWN),
            float(CHANNEL_CODE["card_present"]),
        )
        idx = node_index(g)
        own = {
            (ACCOUNT, "a1"): "paid_by",
            (CARD, "c1"): "paid_with",
            (MERCHANT, "m9"): "paid_at",
            (DEVICE, "d1"): "paid_from_device",
            (IP, "10.0.0.9"): "paid_from_ip",
        }
        hop1 = {k for k, i in idx.items() if g.node_hop[i] == 1}
        assert hop1 == set(own)
        into_root = sorted(
            ((g.node_type[s], g.node_id[s]), r, e)
            for s, d, r, e in zip(g.src, g.dst, g.rel, g.edge_ts, strict=True)
            if d == 0
        )
        assert into_root == sorted((k, RELATION_CODE[rel], t) for k, rel in own.items())

    def test_query_without_device_or_ip_has_three_own_entities(self, store: GraphStore) -> None:
        (g,) = store.sample([payment("q", 5, account="a", card="c", merchant="m")], self.fanouts)
        idx = node_index(g)
        assert {k for k, i in idx.items() if g.node_hop[i] == 1} == {
            (ACCOUNT, "a"),
            (CARD, "c"),
            (MERCHANT, "m"),
        }

    def test_one_subgraph_per_query_in_order(self, store: GraphStore) -> None:
        store.add_many(mixed_history())
        queries = [payment(f"q{i}", 100 + i, account=f"a{i % 3 + 1}") for i in range(5)]
        out = store.sample(queries, self.fanouts)
        assert [g.node_id[0] for g in out] == [q.event_id for q in queries]
        assert [g.t for g in out] == [ts(100 + i) for i in range(5)]

    # -- point in time -------------------------------------------------------------------------
    def test_only_edges_strictly_before_the_query_are_sampled(self, store: GraphStore) -> None:
        shared: dict[str, Any] = {"account": "a", "card": "c", "merchant": "m"}
        before = {"b1": 100, "b2": 150, "b3": 199}
        for eid, when in before.items():
            store.add(payment(eid, when, **shared))
        store.add(payment("tie", 200, **shared))
        store.add(payment("late", 201, **shared))
        store.add(login("l-late", 250, account="a", device="d-late"))
        q = payment("q", 200, **shared)
        (g,) = store.sample([q], self.fanouts)
        t = ts(200)
        stored = [e for e, d in zip(g.edge_ts, g.dst, strict=True) if d != 0]
        assert stored, "the past payments should have been sampled"
        assert all(e < t for e in stored)
        txns = {g.node_id[i] for i in range(1, g.num_nodes) if g.node_type[i] == TXN}
        assert txns == set(before)
        assert (DEVICE, "d-late") not in node_index(g)
        assert g.max_time_used == ts(199)
        # entity attributes count only the three earlier payments; the latest was 1 s before t
        acct = g.node_attr[node_index(g)[(ACCOUNT, "a")]]
        assert acct[:2] == (3.0, 1.0)

    def test_replayed_query_never_samples_itself(self, store: GraphStore) -> None:
        q = payment("q", 50, account="a", card="c", merchant="m", device="d")
        store.add(payment("old", 10, account="a", card="c", merchant="m", device="d"))
        store.add(q)
        (g,) = store.sample([q], self.fanouts)
        assert g.node_id.count("q") == 1
        assert {g.node_id[i] for i in range(g.num_nodes) if g.node_type[i] == TXN} == {"q", "old"}

    def test_fanout_keeps_the_most_recent_edges_of_a_hub(self, store: GraphStore) -> None:
        for k in range(1, 101):
            store.add(payment(f"p{k}", k, account=f"a{k}", card=f"c{k}", merchant="hub"))
        q = payment("q", 90.5, account="qa", card="qc", merchant="hub")
        (g,) = store.sample([q], (15,))
        idx = node_index(g)
        hub = idx[(MERCHANT, "hub")]
        got = sources_into(g, hub)
        assert len(got) == 15
        assert set(got) == {(TXN, f"p{k}") for k in range(76, 91)}
        assert sorted(e for e, d in zip(g.edge_ts, g.dst, strict=True) if d == hub) == [
            ts(k) for k in range(76, 91)
        ]
        assert g.node_attr[hub][0] == 90.0  # degree counts every edge before t, not just sampled
        assert g.node_attr[hub][1] == pytest.approx(0.5)
        assert g.max_time_used == ts(90)

    def test_fanout_applies_per_hop(self, store: GraphStore) -> None:
        store.add(link("s", 0.5, src="qa", dst="b"))
        for k in range(1, 31):
            store.add(payment(f"p{k}", k, account="b", card=f"c{k}", merchant=f"m{k}"))
        (g,) = store.sample([payment("q", 100, account="qa", card="qc", merchant="qm")], (15, 10))
        idx = node_index(g)
        b = idx[(ACCOUNT, "b")]
        assert g.node_hop[b] == 2
        got = sources_into(g, b)
        assert len(got) == 10
        assert set(got) == {(TXN, f"p{k}") for k in range(21, 31)}
        assert {g.node_hop[idx[k]] for k in got} == {3}

    def test_deeper_hops_reach_through_devices_and_social_links(self, store: GraphStore) -> None:
        store.add(login("l1", 10, account="qa", device="shared"))
        store.add(login("l2", 20, account="other", device="shared"))
        store.add(link("s1", 30, src="qa", dst="friend", kind="shared_address"))
        (g,) = store.sample([payment("q", 100, account="qa", card="qc", merchant="qm")], (15, 10))
        idx = node_index(g)
        qa, shared = idx[(ACCOUNT, "qa")], idx[(DEVICE, "shared")]
        assert (DEVICE, "shared") in sources_into(g, qa)
        assert (ACCOUNT, "friend") in sources_into(g, qa)
        assert (ACCOUNT, "other") in sources_into(g, shared)
        rels = {
            (g.node_id[s], g.node_id[d]): r for s, d, r in zip(g.src, g.dst, g.rel, strict=True)
        }
        assert rels[("shared", "qa")] == RELATION_CODE["logged_in_on"]
        assert rels[("friend", "qa")] == RELATION_CODE["shared_identity"]
        assert rels[("other", "shared")] == RELATION_CODE["logged_in_on"]

    def test_labels_are_visible_only_once_known_before_t(self, store: GraphStore) -> None:
        shared: dict[str, Any] = {"account": "a", "card": "c", "merchant": "m"}
        p1, p2, p3, p4 = (payment(f"p{i}", 100 * i, **shared) for i in range(1, 5))
        store.add_many([p1, p2, p3, p4])
        store.add(label("l1", 950, txn=p1, fraud=True))  # known before t
        store.add(label("l2", 1000, txn=p2, fraud=False))  # known exactly at t: not yet
        store.add(label("l3", 1005, txn=p3, fraud=True))  # known after t
        (g,) = store.sample([payment("q", 1000, **shared)], self.fanouts)
        idx = node_index(g)
        shown = {pid: g.node_attr[idx[(TXN, pid)]][2] for pid in ("p1", "p2", "p3", "p4")}
        assert shown == {
            "p1": LABEL_FRAUD,
            "p2": LABEL_UNKNOWN,
            "p3": LABEL_UNKNOWN,
            "p4": LABEL_UNKNOWN,
        }
        assert g.max_time_used == ts(950)  # the label is the newest thing used

    def test_label_lookup_is_strictly_before_and_latest_wins(self, store: GraphStore) -> None:
        p = payment("p", 10)
        store.add(p)
        store.add(label("l1", 100, txn=p, fraud=True))
        store.add(label("l2", 200, txn=p, fraud=False))  # analyst overturns the chargeback
        assert store.label("p", ts(100)) == LABEL_UNKNOWN
        assert store.label("p", ts(100.5)) == LABEL_FRAUD
        assert store.label("p", ts(200)) == LABEL_FRAUD
        assert store.label("p", ts(201)) == LABEL_LEGIT
        assert store.label("unknown", ts(500)) == LABEL_UNKNOWN

    def test_labels_are_handed_back_even_before_their_payment(self, store: GraphStore) -> None:
        p, q = payment("p", 10), payment("q", 20)
        store.add_many([label("l2", 200, txn=p, fraud=False), label("l1", 100, txn=p)])
        store.add(label("l3", 50, txn=q))
        assert store.transaction("p") is None  # the payment has not arrived yet
        want_p = [StoredLabel("l1", ts(100), True), StoredLabel("l2", ts(200), False)]
        assert store.labels_for(["p", "q", "none", "p"]) == {
            "p": want_p,
            "q": [StoredLabel("l3", ts(50), True)],
        }
        store.add_many([p, label("l1", 100, txn=p)])  # payment arrives; a replayed label
        assert store.labels_for(["p"]) == {"p": want_p}
        assert store.labels_for([]) == {}

    def test_insertion_order_does_not_change_the_sample(self, store: GraphStore) -> None:
        events: list[AnyEvent] = [
            payment(
                f"p{k}",
                k,
                account=f"a{k % 4}",
                card=f"c{k % 3}",
                merchant=f"m{k % 5}",
                device=f"d{k % 2}",
            )
            for k in range(1, 40)
        ]
        events += [
            login(f"l{k}", k + 0.5, account=f"a{k % 4}", device=f"d{k % 3}") for k in range(10)
        ]
        shuffled = list(events)
        random.Random(4).shuffle(shuffled)
        other = self.make_store()
        try:
            store.add_many(events)
            other.add_many(shuffled)
            q = payment("q", 30.25, account="a1", card="c1", merchant="m1", device="d1")
            # caps bind on entities (distinct times) but not on payments (whose links tie)
            (a,) = store.sample([q], (4, 5))
            (b,) = other.sample([q], (4, 5))
        finally:
            other.close()
        assert canonical(a) == canonical(b)

    # -- lookups, housekeeping, validation -----------------------------------------------------
    def test_transaction_round_trip(self, store: GraphStore) -> None:
        p = payment(
            "tx-1",
            42,
            account="a",
            card="c",
            merchant="m",
            amount=17.5,
            device="d",
            ip="2001:db8::1",
            channel="p2p",
        )
        store.add(p)
        assert store.transaction("tx-1") == TxnRecord(
            "tx-1", p.event_time.timestamp(), "a", "c", "m", "d", "2001:db8::1", 17.5, "p2p"
        )
        assert store.transaction("nope") is None

    def test_transactions_answers_the_stored_ones_in_one_call(self, store: GraphStore) -> None:
        store.add_many(
            [
                payment("t1", 1, account="a1", card="c1", merchant="m", amount=3.0),
                payment("t2", 2, account="a2", card="c2", merchant="m", device="d", amount=4.5),
            ]
        )
        found = store.transactions(["t2", "missing", "t1", "t2"])
        assert set(found) == {"t1", "t2"}
        assert found["t2"] == store.transaction("t2")
        assert (found["t1"].account_id, found["t1"].amount) == ("a1", 3.0)
        assert found["t2"].device_id == "d"
        assert store.transactions([]) == {}

    def test_evict_before_drops_old_edges_and_payments(self, store: GraphStore) -> None:
        for k in range(10):
            store.add(payment(f"p{k}", k, account="a", card=f"c{k}", merchant="m"))
        assert store.evict_before(ts(5)) == 5 * 3
        assert store.stats()["edges"] == 5 * 3
        assert store.transaction("p4") is None
        assert store.transaction("p5") is not None
        (g,) = store.sample([payment("q", 100, account="a", card="qc", merchant="qm")], (50,))
        txns = {g.node_id[i] for i in range(1, g.num_nodes) if g.node_type[i] == TXN}
        assert txns == {f"p{k}" for k in range(5, 10)}
        assert store.evict_before(ts(5)) == 0

    @pytest.mark.parametrize("fanouts", [(), (0,), (15, 0), (-1,)])
    def test_fanouts_are_validated(self, store: GraphStore, fanouts: tuple[int, ...]) -> None:
        with pytest.raises(ValueError, match="fanouts"):
            store.sample([payment("q", 1)], fanouts)

    def test_unseen_entities_do_not_crash(self, store: GraphStore) -> None:
        store.add(payment("p", 1, account="someone", card="else", merchant="entirely"))
        q = payment("q", 10, account="new", card="new", merchant="new", device="new", ip="::1")
        (g,) = store.sample([q], self.fanouts)
        assert g.num_nodes == 6
        assert g.num_edges == 5
        assert [g.node_attr[i] for i in range(1, 6)] == [(0.0, -1.0, 0.0, 0.0)] * 5
        assert g.max_time_used == -math.inf
        empty = self.make_store()
        try:
            (g2,) = empty.sample([q], self.fanouts)
            assert g2.num_nodes == 6
            assert {k: v for k, v in empty.stats().items() if k in NODE_TYPES} == dict.fromkeys(
                NODE_TYPES, 0
            )
        finally:
            empty.close()
