"""Idempotent scoring: a retry returns the first decision and ingests nothing twice."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from gnn.artifact import ModelBundle
from services.idempotency import IdempotencyCache, IdempotencyConflict
from tests.factories import payment
from tests.services.api_harness import TEN_AM, App, body, make_app


def test_a_retry_returns_the_same_decision_and_does_not_ingest_twice(app: App) -> None:
    first = app.client.post("/v1/score", json=body(), headers={"Idempotency-Key": "k-1"})
    edges = app.c.graph.stats()["edges"]
    records = len(app.audit.records)
    again = app.client.post("/v1/score", json=body(), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    a, b = first.json(), again.json()
    assert (a["score"], a["action"], a["receipt"]) == (b["score"], b["action"], b["receipt"])
    assert app.c.graph.stats()["edges"] == edges
    assert len(app.audit.records) == records
    assert app.c.ingestor.stats.accepted["payment"] == 1


def test_without_a_header_the_transaction_id_is_the_key(app: App) -> None:
    a = app.client.post("/v1/score", json=body()).json()
    b = app.client.post("/v1/score", json=body()).json()
    assert a["receipt"] == b["receipt"]
    assert len(app.audit.records) == 1


def test_a_key_reused_with_another_body_is_409(app: App) -> None:
    assert app.client.post("/v1/score", json=body(), headers={"Idempotency-Key": "k"}).is_success
    r = app.client.post("/v1/score", json=body(amount=999.0), headers={"Idempotency-Key": "k"})
    assert r.status_code == 409
    assert "another body" in r.json()["detail"]


def test_a_retry_with_less_time_left_is_the_same_request(app: App) -> None:
    first = app.client.post("/v1/score", json=body(deadline_ms=50))
    again = app.client.post("/v1/score", json=body(deadline_ms=20))  # its budget shrank
    assert first.status_code == again.status_code == 200
    assert first.json()["receipt"] == again.json()["receipt"]
    assert len(app.audit.records) == 1


@pytest.mark.parametrize("first_key", [None, "k-a"], ids=["id-as-key", "own-key"])
def test_another_payment_under_a_scored_transaction_id_is_409_whatever_the_key(
    app: App, first_key: str | None
) -> None:
    headers = {} if first_key is None else {"Idempotency-Key": first_key}
    assert app.client.post("/v1/score", json=body(), headers=headers).is_success
    held = app.c.graph.transaction("tx-1")
    r = app.client.post("/v1/score", json=body(amount=999.0), headers={"Idempotency-Key": "k-b"})
    assert r.status_code == 409
    assert "transaction id 'tx-1' was scored with another body" in r.json()["detail"]
    # The same payment again under yet another key is a re-score, not a conflict.
    same = app.client.post("/v1/score", json=body(), headers={"Idempotency-Key": "k-c"})
    assert same.status_code == 200
    assert app.c.graph.transaction("tx-1") == held
    assert app.c.ingestor.stats.accepted["payment"] == 1


def test_two_bodies_under_one_transaction_id_in_one_batch(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    with make_app(tmp_path, bundle) as a:
        scoring = a.c.scoring
        sizes: list[int] = []
        taken = threading.Event()

        def on_batch(n: int) -> None:
            sizes.append(n)
            taken.set()

        scoring.on_batch = on_batch
        principal = a.c.auth.authenticate("dev-key")
        mine = payment("tx-z", TEN_AM, amount=10.0)
        other = payment("tx-z", TEN_AM, amount=99.0)
        with scoring.lock:  # the worker takes the first batch, then waits: the next two queue
            busy = scoring.submit(payment("tx-busy", TEN_AM), principal, 1000.0, {})
            assert taken.wait(10)
            first = scoring.submit(mine, principal, 1000.0, {"amount": 10.0})  # the id as key
            second = scoring.submit(other, principal, 1000.0, {"amount": 99.0}, "k-other")
        busy.result(10)
        assert first.result(10).rung == "full"
        with pytest.raises(IdempotencyConflict, match="'tx-z' was scored with another body"):
            second.result(10)
        assert sizes[1:] == [2]  # one batch held both (the second waited for the first in it)
        held = a.c.graph.transaction("tx-z")
        assert held is not None and held.amount == 10.0


def test_the_cache_is_bounded_and_scoped_by_caller() -> None:
    c = IdempotencyCache(max_entries=2)
    for i in range(3):
        c.put("caller", f"k{i}", "h", {"i": i})
    assert len(c) == 2
    assert c.get("caller", "k0", "h") is None
    assert c.get("caller", "k2", "h") == {"i": 2}
    assert c.get("someone-else", "k2", "h") is None
    with pytest.raises(IdempotencyConflict):
        c.get("caller", "k2", "other-hash")


def test_a_stored_answer_is_a_copy_the_collector_does_not_scan() -> None:
    c = IdempotencyCache()
    answer = {"score": 0.25, "reasons": ["velocity"], "latency_ms": {"gnn": 1.5}}
    c.put("caller", "k", "h", answer)
    answer["reasons"].append("changed after put")
    got = c.get("caller", "k", "h")
    assert got == {"score": 0.25, "reasons": ["velocity"], "latency_ms": {"gnn": 1.5}}
    assert got is not None
    got["reasons"].clear()  # the caller's copy: the cache keeps its own
    assert c.get("caller", "k", "h") == {
        "score": 0.25,
        "reasons": ["velocity"],
        "latency_ms": {"gnn": 1.5},
    }
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2_000):
        c.put("caller", f"n{i}", "h", {"reasons": [f"r{i}"], "nested": {"list": [i]}})
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # not ~4 tracked objects per entry
