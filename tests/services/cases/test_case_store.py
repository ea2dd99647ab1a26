"""Case stores: the ``CaseStore`` contract against SQLite and a real Neo4j, what each adds (SQLite
survives a reopen; Neo4j cases hang off the graph store's own nodes without disturbing it), and
the case model's own checks.

The Neo4j tests need the server from ``deploy/services.sh up neo4j`` (``RISKGRAPH_NEO4J_URI``,
default ``bolt://127.0.0.1:7687``); a missing server fails them, it never skips them. Every
store gets a fresh random namespace, deleted (cases and graph) after the test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from neo4j import Driver, GraphDatabase

from feature_stream.graph_neo4j import Neo4jGraphStore, delete_namespace
from services.cases.model import Case, case_id_for
from services.cases.store import CaseStore
from services.cases.store_neo4j import Neo4jCaseStore, delete_cases
from services.cases.store_sqlite import SqliteCaseStore
from tests.factories import payment, ts
from tests.feature_stream.graph_store_contract import canonical
from tests.services.cases.case_store_contract import CaseStoreContract, make_case

URI = os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687")


# -- SQLite ---------------------------------------------------------------------------------------
class TestSqliteCaseStoreContract(CaseStoreContract):
    def make_store(self) -> CaseStore:
        return SqliteCaseStore(":memory:")


class TestSqliteCaseStoreFileContract(CaseStoreContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self) -> CaseStore:
        return SqliteCaseStore(self.dir / "cases" / "cases.db")


def test_sqlite_cases_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "cases.db"
    first = SqliteCaseStore(path)
    first.add(make_case("p1", embedding=(0.5, 0.25), reasons=["velocity"]))
    first.add(make_case("p2", entities={"account_id": "a-p1", "card_id": "c", "merchant_id": "m"}))
    first.set_verdict(case_id_for("p1"), "fraud", "ann", "chargeback", ts(50))
    first.assign(case_id_for("p2"), "bob")
    first.close()

    again = SqliteCaseStore(path)
    p1 = make_case(
        "p1",
        embedding=(0.5, 0.25),
        reasons=["velocity"],
        status="fraud",
        verdict_by="ann",
        verdict_note="chargeback",
        verdict_at=ts(50),
    )
    assert again.get(case_id_for("p1")) == p1
    assert again.get(case_id_for("p2")) is not None
    assert again.list("t1", reason="velocity") == [p1]
    assert [c.case_id for c, _ in again.sharing("t1", {"account_id": "a-p1"})] == [
        "case-p1",
        "case-p2",
    ]
    assert list(again.resolved_with_embeddings()) == [p1]
    assert again.add(make_case("p1")) is False
    again.close()


def test_sqlite_refuses_a_schema_of_another_version(tmp_path: Path) -> None:
    path = tmp_path / "cases.db"
    SqliteCaseStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ValueError, match="schema version 99"):
        SqliteCaseStore(path)


def test_sqlite_file_runs_in_wal_mode(tmp_path: Path) -> None:
    """WAL lets a backup or an ad-hoc query read the file while the service writes."""
    path = tmp_path / "cases.db"
    SqliteCaseStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def synced_inodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the inode of every file the case store fsyncs."""
    seen: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr("services.cases.store_sqlite.os.fsync", fsync)
    return seen


def test_sqlite_new_cases_are_fsynced_by_the_background_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = synced_inodes(monkeypatch)
    store = SqliteCaseStore(tmp_path / "cases.db", max_delay_s=0.01)
    store.add(make_case("p1"))
    store.add(make_case("p2"))
    deadline = time.monotonic() + 5
    while store.unsynced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.unsynced == 0
    assert set(seen) == {os.stat(tmp_path / "cases.db-wal").st_ino}  # SQLite's log, no other
    store.close()


def test_sqlite_fsyncs_the_log_sqlite_writes_behind_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite writes its log beside the file a symlinked path resolves to."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link.db").symlink_to(tmp_path / "real" / "cases.db")
    seen = synced_inodes(monkeypatch)
    store = SqliteCaseStore(tmp_path / "link.db", max_delay_s=None)
    store.add(make_case("p1"))
    store.set_verdict(case_id_for("p1"), "fraud", "ann", "chargeback", ts(50))
    assert seen == [os.stat(tmp_path / "real" / "cases.db-wal").st_ino]
    store.close()


def test_sqlite_log_stays_bounded_under_a_stream_of_adds(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint keeps rewinding the log (about 40 KB per case here; 1,500
    cases would make a 60 MB log without it)."""
    store = SqliteCaseStore(tmp_path / "cases.db", max_delay_s=0.01)
    for i in range(1500):
        store.add(make_case(f"p{i}", reasons=["velocity", "amount"]))
    assert os.stat(tmp_path / "cases.db-wal").st_size < 16 * 2**20
    store.close()


def test_sqlite_verdicts_are_fsynced_before_the_call_returns(tmp_path: Path) -> None:
    store = SqliteCaseStore(tmp_path / "cases.db", max_delay_s=None)
    store.add(make_case("p1"))
    store.add(make_case("p2"))
    store.add(make_case("p2"))  # a duplicate commits nothing and counts nothing
    assert store.unsynced == 2  # no background sync: adds wait for the next fsync
    store.set_verdict(case_id_for("p1"), "fraud", "ann", "chargeback", ts(50))
    assert store.unsynced == 0  # the verdict's fsync covers the adds before it too
    store.add(make_case("p3"))
    store.assign(case_id_for("p3"), "bob")
    assert store.unsynced == 0
    store.close()


def test_sqlite_memory_store_has_nothing_to_sync() -> None:
    store = SqliteCaseStore(":memory:")
    store.add(make_case("p1"))
    assert store.unsynced == 0
    store.close()


# -- the model ------------------------------------------------------------------------------------
def test_case_id_must_derive_from_the_transaction() -> None:
    with pytest.raises(ValueError, match="case-p1"):
        make_case("p1", case_id="case-p2")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("score", 1.5, "score"),
        ("score", float("nan"), "score"),
        ("amount", -1.0, "amount"),
        ("action", "allow", "action"),
        ("status", "closed", "status"),
        ("entities", {"account_id": "a", "card_id": "c"}, "merchant_id"),
        ("entities", {"account_id": "a", "card_id": "c", "merchant_id": "m", "x": "1"}, "x"),
        ("embedding", (), "embedding"),
        ("embedding", (1.0, float("inf")), "embedding"),
        ("tenant", "", "tenant"),
    ],
)
def test_a_malformed_case_is_refused(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_case("p1", **{field: value})


def test_case_normalises_what_stores_cannot_keep_verbatim() -> None:
    c = make_case(
        "p1",
        score=1,
        entities={"merchant_id": "m", "device_id": None, "account_id": "a", "card_id": "c"},
        embedding=[0.1, 0.2],
    )
    assert isinstance(c.score, float)
    assert list(c.entities) == ["account_id", "card_id", "merchant_id"]
    # float32, like the BLOB and the FAISS index: 0.1 is not exactly representable.
    assert c.embedding == (0.10000000149011612, 0.20000000298023224)


def test_as_dict_is_json_friendly() -> None:
    c = make_case("p1", embedding=(0.5,), scenario="ring")
    d = json.loads(json.dumps(c.as_dict()))
    assert d["embedding"] == [0.5]
    assert d["case_id"] == "case-p1" and d["entities"]["account_id"] == "a-p1"
    assert Case(**{**d, "embedding": tuple(d["embedding"])}) == c


# -- Neo4j ----------------------------------------------------------------------------------------
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
    """Hands out fresh namespaces and deletes their cases and graph nodes at the end."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.used: list[str] = []

    def new(self) -> str:
        ns = f"test-{uuid.uuid4().hex[:12]}"
        self.used.append(ns)
        return ns

    def drop(self) -> None:
        for ns in self.used:
            delete_cases(self.driver, ns)
            delete_namespace(self.driver, ns)


@pytest.fixture
def namespaces(neo4j_driver: Driver) -> Iterator[Namespaces]:
    n = Namespaces(neo4j_driver)
    yield n
    n.drop()


@pytest.mark.integration
class TestNeo4jCaseStoreContract(CaseStoreContract):
    @pytest.fixture(autouse=True)
    def _namespaces(self, namespaces: Namespaces) -> None:
        self.namespaces = namespaces

    def make_store(self) -> CaseStore:
        return Neo4jCaseStore(URI, namespace=self.namespaces.new())


def links(driver: Driver, ns: str, case_id: str) -> list[tuple[str, str, str]]:
    """``(relationship type, label, id)`` of every node the case links to, sorted."""
    rows = driver.execute_query(
        "MATCH (c:Case {ns: $ns, id: $id})-[r]->(n) RETURN type(r) AS t, labels(n) AS l, n.id AS i",
        {"ns": ns, "id": case_id},
    ).records
    return sorted((r["t"], r["l"][0], r["i"]) for r in rows)


def count_nodes(driver: Driver, ns: str, label: str, node_id: str) -> int:
    rows = driver.execute_query(
        "MATCH (n) WHERE n.ns = $ns AND n.id = $id AND $label IN labels(n) RETURN count(n) AS n",
        {"ns": ns, "id": node_id, "label": label},
    ).records
    return int(rows[0]["n"])


@pytest.mark.integration
def test_neo4j_case_links_to_the_graph_stores_nodes(
    namespaces: Namespaces, neo4j_driver: Driver
) -> None:
    ns = namespaces.new()
    graph = Neo4jGraphStore(URI, namespace=ns)
    cases = Neo4jCaseStore(URI, namespace=ns)
    try:
        graph.add(payment("p1", 10, account="a1", card="c1", merchant="m1", device="d1"))
        case = make_case(
            "p1",
            entities={"account_id": "a1", "card_id": "c1", "merchant_id": "m1", "device_id": "d1"},
        )
        assert cases.add(case) is True
        assert links(neo4j_driver, ns, case.case_id) == [
            ("ABOUT", "Transaction", "p1"),
            ("INVOLVES", "Account", "a1"),
            ("INVOLVES", "Card", "c1"),
            ("INVOLVES", "Device", "d1"),
            ("INVOLVES", "Merchant", "m1"),
        ]
        for label, node_id in [("Account", "a1"), ("Card", "c1"), ("Transaction", "p1")]:
            assert count_nodes(neo4j_driver, ns, label, node_id) == 1
    finally:
        graph.close()
        cases.close()


@pytest.mark.integration
def test_neo4j_case_before_its_payment_costs_the_graph_nothing(
    namespaces: Namespaces, neo4j_driver: Driver
) -> None:
    """The scoring path may open a case before the stream worker writes the payment: the graph
    must still store the payment with all its edges, and the case links to it on its next write."""
    ns = namespaces.new()
    graph = Neo4jGraphStore(URI, namespace=ns)
    cases = Neo4jCaseStore(URI, namespace=ns)
    reference = Neo4jGraphStore(URI, namespace=namespaces.new())
    try:
        case = make_case(
            "p1",
            entities={"account_id": "a1", "card_id": "c1", "merchant_id": "m1", "ip": "10.0.0.7"},
        )
        cases.add(case)
        assert links(neo4j_driver, ns, case.case_id) == [
            ("INVOLVES", "Account", "a1"),
            ("INVOLVES", "Card", "c1"),
            ("INVOLVES", "IP", "10.0.0.7"),
            ("INVOLVES", "Merchant", "m1"),
        ]
        events = [
            payment("p1", 10, account="a1", card="c1", merchant="m1", ip="10.0.0.7"),
            payment("p2", 20, account="a1", card="c9", merchant="m1"),
        ]
        graph.add_many(events)
        reference.add_many(events)
        query = [payment("q", 100, account="a1", card="c1", merchant="m1", ip="10.0.0.7")]
        assert graph.transaction("p1") == reference.transaction("p1")
        assert [canonical(g) for g in graph.sample(query, (5, 5))] == [
            canonical(g) for g in reference.sample(query, (5, 5))
        ]
        cases.assign(case.case_id, "ann")
        assert ("ABOUT", "Transaction", "p1") in links(neo4j_driver, ns, case.case_id)
    finally:
        for s in (graph, reference):
            s.close()
        cases.close()


@pytest.mark.integration
def test_neo4j_cases_never_enter_a_sampled_neighbourhood(namespaces: Namespaces) -> None:
    ns = namespaces.new()
    graph = Neo4jGraphStore(URI, namespace=ns)
    cases = Neo4jCaseStore(URI, namespace=ns)
    try:
        graph.add_many(
            [
                payment("p1", 10, account="a1", card="c1", merchant="m1", device="d1"),
                payment("p2", 20, account="a2", card="c2", merchant="m1", device="d1"),
                payment("p3", 30, account="a1", card="c3", merchant="m2"),
            ]
        )
        query = [payment("q", 100, account="a1", card="c1", merchant="m1", device="d1")]
        before = [canonical(g) for g in graph.sample(query, (10, 10))]
        stats = graph.stats()
        for txn, acct, card, merch in [("p1", "a1", "c1", "m1"), ("p2", "a2", "c2", "m1")]:
            ents = {"account_id": acct, "card_id": card, "merchant_id": merch, "device_id": "d1"}
            cases.add(make_case(txn, entities=ents))
        cases.set_verdict(case_id_for("p1"), "fraud", "ann", "", ts(40))
        assert [canonical(g) for g in graph.sample(query, (10, 10))] == before
        assert graph.stats() == stats  # case links are not graph edges
        assert graph.evict_before(ts(25)) == 2 * 4  # p1's and p2's edges, not their case links
    finally:
        graph.close()
        cases.close()


@pytest.mark.integration
def test_neo4j_namespaces_do_not_see_each_other(namespaces: Namespaces) -> None:
    one = Neo4jCaseStore(URI, namespace=namespaces.new())
    two = Neo4jCaseStore(URI, namespace=namespaces.new())
    try:
        one.add(make_case("p1"))
        assert two.get(case_id_for("p1")) is None
        assert two.add(make_case("p1")) is True
        assert two.sharing("t1", make_case("p1").entities) == [
            (make_case("p1"), ["account", "card", "merchant"])
        ]
        assert one.clear() == 1
        assert one.get(case_id_for("p1")) is None
        assert two.get(case_id_for("p1")) == make_case("p1")
    finally:
        one.close()
        two.close()
