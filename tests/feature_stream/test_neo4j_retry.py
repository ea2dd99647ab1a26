"""RetryPolicy against a real Neo4j: a deadlock between two writers is retried and both commit;
an error that is not transient is raised at once.

Needs the server from ``deploy/services.sh up neo4j``; a missing server fails, never skips.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from neo4j import Driver, Transaction
from neo4j.exceptions import ClientError

from feature_stream import graph_neo4j_cypher as cy
from feature_stream.graph_neo4j import Neo4jGraphStore, delete_namespace
from feature_stream.neo4j_retry import RetryPolicy
from tests.feature_stream.test_graph_neo4j import URI, neo4j_driver  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


@pytest.fixture
def ns(neo4j_driver: Driver) -> Iterator[str]:  # noqa: F811
    name = f"test-{uuid.uuid4().hex[:12]}"
    Neo4jGraphStore(URI, namespace=name).close()  # the schema: (ns, id) unique per label
    yield name
    delete_namespace(neo4j_driver, name)


def test_two_writers_that_deadlock_both_commit(
    neo4j_driver: Driver,  # noqa: F811
    ns: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each writer MERGEs one new account, waits until the other holds its own, then MERGEs the
    # other's: the second MERGE of each waits on the other's unique-index lock, so Neo4j
    # aborts one of them. Only first attempts meet at the barrier.
    barrier = threading.Barrier(2, timeout=20)
    attempts = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def work(tx: Transaction, me: str, first: str, second: str) -> None:
        attempts[me] += 1
        tx.run("MERGE (:Account {ns: $ns, id: $id})", ns=ns, id=first).consume()
        if attempts[me] == 1:
            barrier.wait()
        tx.run("MERGE (:Account {ns: $ns, id: $id})", ns=ns, id=second).consume()

    def writer(me: str, first: str, second: str) -> None:
        try:
            with neo4j_driver.session() as s:
                RetryPolicy(first_delay_s=0.01).run(s, work, me, first, second)
        except BaseException as exc:
            errors.append(exc)

    caplog.set_level(logging.WARNING, logger="riskgraph.neo4j")
    threads = [
        threading.Thread(target=writer, args=("a", "x", "y")),
        threading.Thread(target=writer, args=("b", "y", "x")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]
    retries = [r.getMessage() for r in caplog.records if r.name == "riskgraph.neo4j"]
    assert len(retries) == 1
    assert "DeadlockDetected" in retries[0]
    rows = neo4j_driver.execute_query(
        "MATCH (a:Account {ns: $ns}) RETURN a.id AS id ORDER BY id", ns=ns
    ).records
    assert [r["id"] for r in rows] == ["x", "y"]


def test_an_error_that_is_not_transient_is_raised_at_once(
    neo4j_driver: Driver,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def work(tx: Transaction) -> None:
        nonlocal calls
        calls += 1
        tx.run("THIS IS NOT CYPHER").consume()

    caplog.set_level(logging.WARNING, logger="riskgraph.neo4j")
    with neo4j_driver.session() as s, pytest.raises(ClientError, match="SyntaxError"):
        RetryPolicy().run(s, work)
    assert calls == 1
    assert [r for r in caplog.records if r.name == "riskgraph.neo4j"] == []


def test_delays_must_be_positive_and_ordered() -> None:
    with pytest.raises(ValueError, match="first_delay_s"):
        RetryPolicy(first_delay_s=0.0)
    with pytest.raises(ValueError, match="first_delay_s"):
        RetryPolicy(first_delay_s=2.0, max_delay_s=1.0)


def _drop_schema(driver: Driver) -> None:
    names = {name for name, _ in cy.schema()}
    constraints = {r["name"] for r in driver.execute_query("SHOW CONSTRAINTS YIELD name").records}
    for name in sorted(names & constraints):
        driver.execute_query(f"DROP CONSTRAINT {name} IF EXISTS")
    for name in sorted(names - constraints):
        driver.execute_query(f"DROP INDEX {name} IF EXISTS")


def test_workers_that_start_together_on_a_fresh_database_all_start(
    neo4j_driver: Driver,  # noqa: F811
) -> None:
    # Stream workers started at once each create the missing schema; concurrent CREATE
    # CONSTRAINT statements can deadlock on a label's schema lock (a bench run lost a worker
    # to this). Here four stores start together on a database without the schema.
    _drop_schema(neo4j_driver)
    barrier = threading.Barrier(4, timeout=20)
    errors: list[BaseException] = []
    names = [f"test-{uuid.uuid4().hex[:12]}" for _ in range(4)]

    def start(ns: str) -> None:
        try:
            barrier.wait()
            Neo4jGraphStore(URI, namespace=ns).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(ns,)) for ns in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == []
    online = {
        r["name"]
        for r in neo4j_driver.execute_query(
            "SHOW INDEXES YIELD name, state WHERE state = 'ONLINE'"
        ).records
    }
    assert {name for name, _ in cy.schema()} <= online
