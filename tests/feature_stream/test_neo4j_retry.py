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
        except BaseException as exc:  # noqa: BLE001 (reported by the asserts below)
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
