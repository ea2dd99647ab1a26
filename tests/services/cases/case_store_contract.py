"""The contract every :class:`~services.cases.store.CaseStore` passes.

Subclass :class:`CaseStoreContract` in a ``test_*.py`` module and override :meth:`make_store` to
return a fresh, empty store; every test here then runs against that implementation::

    class TestSqliteCaseStore(CaseStoreContract):
        def make_store(self) -> CaseStore:
            return SqliteCaseStore(":memory:")

Expected answers are written out from the cases each test builds, never taken from a store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from services.cases.model import Case, case_id_for
from services.cases.store import CaseStore
from tests.factories import ts


def make_case(txn: str, **kw: Any) -> Case:
    """A valid case for payment ``txn``; any field can be overridden."""
    fields: dict[str, Any] = {
        "case_id": case_id_for(txn),
        "transaction_id": txn,
        "tenant": "t1",
        "created_at": ts(0),
        "score": 0.5,
        "action": "review",
        "reasons": ["score_high"],
        "served_by": "gnn",
        "model_version": "m-1",
        "amount": 10.0,
        "currency": "EUR",
        "entities": {"account_id": f"a-{txn}", "card_id": f"c-{txn}", "merchant_id": f"m-{txn}"},
    }
    fields.update(kw)
    return Case(**fields)


def ids(cases: list[Case]) -> list[str]:
    return [c.transaction_id for c in cases]


class CaseStoreContract:
    """Behaviour shared by every case store (see :mod:`services.cases.store`)."""

    def make_store(self) -> CaseStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Iterator[CaseStore]:
        s = self.make_store()
        yield s
        s.close()

    # -- add / get ------------------------------------------------------------------------------
    def test_get_gives_back_every_field(self, store: CaseStore) -> None:
        full = make_case(
            "p1",
            created_at=ts(12.25),
            score=0.875,
            action="decline",
            reasons=["velocity", "new_device", "ring"],
            served_by="fallback",
            amount=1234.5,
            currency="USD",
            entities={
                "account_id": "a1",
                "card_id": "c1",
                "merchant_id": "m1",
                "device_id": "d1",
                "ip": "10.0.0.1",
            },
            scenario="account_takeover",
            embedding=(0.1, -2.0, 3.3, 1e-7),
        )
        bare = make_case("p2", reasons=[])
        assert store.add(full) is True
        assert store.add(bare) is True
        assert store.get(full.case_id) == full
        assert store.get(bare.case_id) == bare
        got = store.get(full.case_id)
        assert got is not None and got.embedding == full.embedding
        assert got.status == "open" and got.assignee is None and got.verdict_at is None

    def test_get_unknown_is_none(self, store: CaseStore) -> None:
        store.add(make_case("p1"))
        assert store.get("case-nope") is None

    def test_add_is_idempotent_by_case_id(self, store: CaseStore) -> None:
        first = make_case("p1", score=0.9, reasons=["a"])
        again = make_case(
            "p1",
            score=0.1,
            reasons=["b"],
            entities={"account_id": "other", "card_id": "c", "merchant_id": "m"},
        )
        assert store.add(first) is True
        assert store.add(again) is False
        assert store.add(first) is False
        assert store.get(first.case_id) == first
        assert store.count("t1") == 1
        assert store.count("t1", reason="b") == 0
        assert store.sharing("t1", again.entities) == []

    def test_concurrent_adds_of_one_case_store_it_once(self, store: CaseStore) -> None:
        results: list[bool] = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def work() -> None:
            barrier.wait()
            r = store.add(make_case("p1"))
            with lock:
                results.append(r)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False] * 5 + [True]
        assert store.count("t1") == 1
        assert [k for _, k in store.sharing("t1", make_case("p1").entities)] == [
            ["account", "card", "merchant"]
        ]

    # -- queue ----------------------------------------------------------------------------------
    def queue(self, store: CaseStore) -> None:
        """Five cases of t1 (ties on purpose) and one of t2."""
        rows = [  # txn, score, amount, created (s after T0), reasons
            ("p1", 0.90, 50.0, 300, ["velocity"]),
            ("p2", 0.70, 500.0, 100, ["velocity", "new_device"]),
            ("p3", 0.90, 20.0, 200, ["new_device"]),
            ("p4", 0.60, 500.0, 400, ["ring"]),
            ("p5", 0.95, 5.0, 50, ["velocity"]),
        ]
        for txn, score, amount, created, reasons in rows:
            store.add(
                make_case(txn, score=score, amount=amount, created_at=ts(created), reasons=reasons)
            )
        store.add(make_case("q1", tenant="t2", score=0.99, reasons=["velocity"]))

    def test_list_sorts_with_ties_broken_by_case_id(self, store: CaseStore) -> None:
        self.queue(store)
        assert ids(store.list("t1")) == ["p5", "p1", "p3", "p2", "p4"]
        assert ids(store.list("t1", descending=False)) == ["p4", "p2", "p1", "p3", "p5"]
        assert ids(store.list("t1", sort="amount")) == ["p2", "p4", "p1", "p3", "p5"]
        assert ids(store.list("t1", sort="amount", descending=False)) == [
            *("p5", "p3", "p1", "p2", "p4")
        ]

    def test_descending_age_is_oldest_first(self, store: CaseStore) -> None:
        self.queue(store)
        assert ids(store.list("t1", sort="age")) == ["p5", "p2", "p3", "p1", "p4"]
        assert ids(store.list("t1", sort="age", descending=False)) == [
            *("p4", "p1", "p3", "p2", "p5")
        ]

    def test_filters_combine_and_count_agrees(self, store: CaseStore) -> None:
        self.queue(store)
        store.set_verdict(case_id_for("p3"), "fraud", "ann", "", ts(1000))
        store.set_verdict(case_id_for("p4"), "escalate", "ann", "", ts(1000))
        cases: list[tuple[dict[str, Any], list[str]]] = [
            ({}, ["p5", "p1", "p3", "p2", "p4"]),
            ({"status": "open"}, ["p5", "p1", "p2"]),
            ({"status": "escalated"}, ["p4"]),
            ({"status": "legit"}, []),
            ({"reason": "velocity"}, ["p5", "p1", "p2"]),
            ({"reason": "new_device"}, ["p3", "p2"]),
            ({"reason": "unknown"}, []),
            ({"min_score": 0.9}, ["p5", "p1", "p3"]),
            ({"min_score": 0.7, "reason": "new_device", "status": "open"}, ["p2"]),
        ]
        for filters, expected in cases:
            assert ids(store.list("t1", **filters)) == expected, filters
            assert store.count("t1", **filters) == len(expected), filters
        assert ids(store.list("t2")) == ["q1"]
        assert store.count("t3") == 0

    def test_pages_cover_the_queue_once(self, store: CaseStore) -> None:
        self.queue(store)
        pages = [ids(store.list("t1", limit=2, offset=o)) for o in (0, 2, 4, 6)]
        assert pages == [["p5", "p1"], ["p3", "p2"], ["p4"], []]
        assert ids(store.list("t1", sort="age", limit=3, offset=1)) == ["p2", "p3", "p1"]

    def test_bad_queries_are_refused(self, store: CaseStore) -> None:
        with pytest.raises(ValueError, match="sort"):
            store.list("t1", sort="risk")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="status"):
            store.list("t1", status="closed")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit"):
            store.list("t1", limit=0)
        with pytest.raises(ValueError, match="offset"):
            store.list("t1", offset=-1)
        with pytest.raises(ValueError, match="tenant"):
            store.count("")

    # -- verdicts and assignment ----------------------------------------------------------------
    def test_verdicts_record_who_when_why_and_last_one_wins(self, store: CaseStore) -> None:
        store.add(make_case("p1"))
        cid = case_id_for("p1")
        esc = store.set_verdict(cid, "escalate", "ann", "looks like a ring", ts(500))
        assert (esc.status, esc.verdict_by, esc.verdict_note, esc.verdict_at) == (
            "escalated",
            "ann",
            "looks like a ring",
            ts(500),
        )
        assert esc.reviewable
        done = store.set_verdict(cid, "fraud", "bob", "confirmed with issuer", ts(900))
        assert (done.status, done.verdict_by, done.verdict_at) == ("fraud", "bob", ts(900))
        assert not done.reviewable
        assert store.get(cid) == done
        assert done == make_case(
            "p1",
            status="fraud",
            verdict_by="bob",
            verdict_note="confirmed with issuer",
            verdict_at=ts(900),
        )
        overturned = store.set_verdict(cid, "legit", "carol", "customer confirmed", ts(950))
        assert overturned.status == "legit"
        assert store.count("t1", status="legit") == 1 and store.count("t1", status="fraud") == 0

    def test_verdict_on_unknown_case_is_a_key_error(self, store: CaseStore) -> None:
        with pytest.raises(KeyError):
            store.set_verdict("case-nope", "fraud", "ann", "", ts(1))
        assert store.get("case-nope") is None

    def test_bad_verdicts_are_refused(self, store: CaseStore) -> None:
        store.add(make_case("p1"))
        with pytest.raises(ValueError, match="verdict"):
            store.set_verdict(case_id_for("p1"), "maybe", "ann", "", ts(1))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="by"):
            store.set_verdict(case_id_for("p1"), "fraud", "", "", ts(1))
        assert store.get(case_id_for("p1")) == make_case("p1")

    def test_assign_and_release(self, store: CaseStore) -> None:
        store.add(make_case("p1"))
        cid = case_id_for("p1")
        assert store.assign(cid, "ann").assignee == "ann"
        assert store.assign(cid, "bob") == make_case("p1", assignee="bob")
        assert store.get(cid) == make_case("p1", assignee="bob")
        assert store.assign(cid, None).assignee is None
        assert store.get(cid) == make_case("p1")
        with pytest.raises(KeyError):
            store.assign("case-nope", "ann")

    # -- sharing --------------------------------------------------------------------------------
    def ring(self, store: CaseStore) -> dict[str, Case]:
        """A shares account+device with B and card+merchant with C; D is another tenant's copy
        of A; E shares nothing; F's *card* id equals A's *account* id (must not match)."""
        a = {"account_id": "x1", "card_id": "c1", "merchant_id": "m1", "device_id": "d1"}
        cases = {
            "A": make_case("A", created_at=ts(10), entities={**a, "ip": "10.0.0.1"}),
            "B": make_case(
                "B",
                created_at=ts(20),
                entities={
                    "account_id": "x1",
                    "card_id": "c2",
                    "merchant_id": "m2",
                    "device_id": "d1",
                },
            ),
            "C": make_case(
                "C",
                created_at=ts(30),
                entities={
                    "account_id": "x3",
                    "card_id": "c1",
                    "merchant_id": "m1",
                    "ip": "10.9.9.9",
                },
            ),
            "D": make_case("D", tenant="t2", entities={**a, "ip": "10.0.0.1"}),
            "E": make_case(
                "E", entities={"account_id": "x5", "card_id": "c5", "merchant_id": "m5"}
            ),
            "F": make_case(
                "F", entities={"account_id": "x6", "card_id": "x1", "merchant_id": "m6"}
            ),
        }
        for c in cases.values():
            store.add(c)
        return cases

    def test_sharing_names_the_shared_kinds(self, store: CaseStore) -> None:
        c = self.ring(store)
        got = store.sharing("t1", c["A"].entities, exclude_case_id=c["A"].case_id)
        # Both share two kinds; C's payment is the more recent.
        assert got == [(c["C"], ["card", "merchant"]), (c["B"], ["account", "device"])]

    def test_sharing_works_from_either_side(self, store: CaseStore) -> None:
        c = self.ring(store)
        from_b = store.sharing("t1", c["B"].entities, exclude_case_id=c["B"].case_id)
        from_c = store.sharing("t1", c["C"].entities, exclude_case_id=c["C"].case_id)
        assert from_b == [(c["A"], ["account", "device"])]
        assert from_c == [(c["A"], ["card", "merchant"])]

    def test_sharing_includes_the_case_itself_unless_excluded(self, store: CaseStore) -> None:
        c = self.ring(store)
        got = store.sharing("t1", c["A"].entities)
        assert got[0] == (c["A"], ["account", "card", "merchant", "device", "ip"])
        assert [x.transaction_id for x, _ in got] == ["A", "C", "B"]
        assert [x.transaction_id for x, _ in store.sharing("t1", c["A"].entities, limit=2)] == [
            *("A", "C")
        ]

    def test_sharing_stays_within_tenant_and_kind(self, store: CaseStore) -> None:
        c = self.ring(store)
        assert store.sharing("t2", c["A"].entities) == [
            (c["D"], ["account", "card", "merchant", "device", "ip"])
        ]
        # "x1" as a card is F's card, not A's account.
        assert store.sharing("t1", {"card_id": "x1"}) == [(c["F"], ["card"])]
        assert store.sharing("t1", {"account_id": "x1", "device_id": None}) == [
            (c["B"], ["account"]),
            (c["A"], ["account"]),
        ]
        assert store.sharing("t1", {"ip": "10.1.1.1"}) == []
        assert store.sharing("t1", {}) == []
        with pytest.raises(ValueError, match="unknown entity keys"):
            store.sharing("t1", {"phone": "123"})

    # -- precedents -----------------------------------------------------------------------------
    def test_resolved_with_embeddings_are_the_precedents(self, store: CaseStore) -> None:
        emb = (1.0, 0.5, -0.25)
        store.add(make_case("open", embedding=emb))
        for txn, verdict in [("f1", "fraud"), ("l1", "legit"), ("e1", "escalate"), ("f0", "fraud")]:
            store.add(make_case(txn, embedding=emb))
            store.set_verdict(case_id_for(txn), verdict, "ann", "", ts(100))  # type: ignore[arg-type]
        store.add(make_case("noemb"))
        store.set_verdict(case_id_for("noemb"), "legit", "ann", "", ts(100))
        for page_size in (1, 2, 1000):
            got = list(store.resolved_with_embeddings(page_size=page_size))
            assert [c.case_id for c in got] == ["case-f0", "case-f1", "case-l1"], page_size
            assert all(c.embedding == emb for c in got)
        assert [c.status for c in store.resolved_with_embeddings()] == ["fraud", "fraud", "legit"]

    def test_resolved_with_embeddings_of_an_empty_store(self, store: CaseStore) -> None:
        assert list(store.resolved_with_embeddings()) == []
