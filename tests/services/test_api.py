"""The scoring API over real in-memory ports, through FastAPI's test client."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from feature_stream.events import to_record
from feature_stream.features import compute_features
from gnn.artifact import ModelBundle
from services.audit import chain_hash
from services.policy import DecisionResult, GateResult, PolicyEvaluator, ReviewResult
from services.policy_opa import WasmPolicy, source_revision
from tests.factories import at, link, login, payment
from tests.services.api_harness import TEN_AM, App, body, make_app


def test_score_answers_with_score_action_reasons_and_latency(app: App) -> None:
    r = app.client.post("/v1/score", json=body())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["transaction_id"] == "tx-1"
    assert 0.0 <= out["score"] <= 1.0
    assert out["action"] in {"approve", "review", "decline"}
    assert isinstance(out["reasons"], list)
    assert all(isinstance(x, str) for x in out["reasons"])
    assert out["model_version"] == "gnn-test-1"
    assert (out["served_by"], out["rung"]) == ("gnn", "full")
    assert out["policy_revision"] == source_revision()
    stages = {"auth", "queue", "gate_policy", "features", "sampling", "gnn", "decision_policy"}
    assert stages | {"ingest", "audit", "total", "http", "handoff"} <= set(out["latency_ms"])
    assert all(v >= 0 for v in out["latency_ms"].values())
    # The answer's wait for the event loop is a part of the handler's time, not all of it.
    assert out["latency_ms"]["handoff"] < out["latency_ms"]["http"]
    record = app.audit.records[-1]
    assert out["receipt"] == {"seq": record["seq"], "hash": record["hash"]}
    assert (record["kind"], record["request_id"], record["caller"]) == (
        "inference",
        "tx-1",
        "dev-client",
    )
    assert record["score"] == pytest.approx(out["score"], abs=1e-6)
    assert (record["served_by"], record["rung"]) == ("gnn", "full")
    assert "acc-1" not in str(record)  # the request itself is only kept as a keyed hash


def test_a_spent_deadline_is_served_by_the_policy_rung_and_audited_as_such(app: App) -> None:
    r = app.client.post("/v1/score", json=body(deadline_ms=0.001))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["rung"], out["served_by"]) == ("policy", "policy")
    assert "rules" in out["latency_ms"]
    assert "gnn" not in out["latency_ms"]
    assert 0.0 <= out["score"] <= 1.0
    assert out["model_version"] == "gnn-test-1"
    record = app.audit.records[-1]
    assert out["receipt"] == {"seq": record["seq"], "hash": record["hash"]}
    assert (record["rung"], record["served_by"], record["deadline_ms"]) == (
        "policy",
        "policy",
        0.001,
    )
    assert app.c.graph.stats()["transaction"] == 1  # answered, so ingested


def test_a_deadline_the_gnn_cannot_meet_is_served_by_the_tree(app: App) -> None:
    # measured: every GNN rung takes ten seconds; the deadline leaves the tree ample room even
    # on a machine busy enough to slow a first request down
    for rung in ("full", "reduced", "cached"):
        app.c.scoring.costs.observe(rung, 1, 10_000.0)
    r = app.client.post("/v1/score", json=body(deadline_ms=1_500))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["rung"], out["served_by"]) == ("tree", "baseline")
    assert "fallback" in out["latency_ms"]
    assert app.audit.records[-1]["rung"] == "tree"


def test_a_full_queue_sheds_with_429_and_retry_after(tmp_path: Path, bundle: ModelBundle) -> None:
    with make_app(
        tmp_path, bundle, queue_capacity=1, batch_max_size=1, shed_on_deadline=False
    ) as a:
        scoring = a.c.scoring
        taken = threading.Event()
        scoring.on_batch = lambda n: taken.set()
        principal = a.c.auth.authenticate("dev-key")
        jobs = [
            payment(f"tx-q{i}", TEN_AM + i, account="acc-q", card="card-q", merchant="m-q")
            for i in range(2)
        ]
        with scoring.lock:  # the worker takes a batch, then waits for the store lock
            first = scoring.submit(jobs[0], principal, 1000.0, {"i": 0})
            assert taken.wait(10)
            second = scoring.submit(jobs[1], principal, 1000.0, {"i": 1})  # fills the queue
            r = a.client.post("/v1/score", json=body())
            assert r.status_code == 429, r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert "overloaded" in r.json()["detail"]
            assert a.audit.records == []
        assert first.result(10).rung == "full"
        assert second.result(10).rung == "full"
        assert [rec["request_id"] for rec in a.audit.records] == ["tx-q0", "tx-q1"]
        metrics = a.client.get("/metrics").text
        assert 'riskgraph_score_requests_total{outcome="shed"} 1.0' in metrics
        assert a.client.post("/v1/score", json=body()).status_code == 200  # room again


def test_an_expected_wait_beyond_the_deadline_sheds_at_the_door(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    with make_app(tmp_path, bundle) as a:
        scoring = a.c.scoring
        taken = threading.Event()
        scoring.on_batch = lambda n: taken.set()
        for _ in range(20):  # batches of one have been taking 50 ms each
            scoring.batcher.cost.observe(1, 0.050)
        principal = a.c.auth.authenticate("dev-key")
        with scoring.lock:
            busy = scoring.submit(payment("tx-b", TEN_AM), principal, 1000.0, {})
            assert taken.wait(10)  # the worker is busy: a new request waits ~50 ms
            r = a.client.post("/v1/score", json=body(deadline_ms=5))
            assert r.status_code == 429, r.text
            assert "deadline" in r.json()["detail"]
        assert busy.result(10).rung == "full"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": 0}, "amount"),
        ({"card_id": None}, "card_id"),
        ({"colour": "red"}, "colour"),
        ({"event_time": at(TEN_AM).replace(tzinfo=None).isoformat()}, "event_time"),
        ({"channel": "fax"}, "channel"),
        ({"deadline_ms": 0}, "deadline_ms"),
        ({"ip": "300.1.1.1"}, "ip"),
    ],
    ids=[
        "negative-amount",
        "zero-amount",
        "missing-card",
        "extra-field",
        "naive-time",
        "bad-channel",
        "zero-deadline",
        "bad-ip",
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    app: App, changes: dict[str, Any], field: str
) -> None:
    request = {k: v for k, v in body(**changes).items() if v is not None}
    r = app.client.post("/v1/score", json=request)
    assert r.status_code == 422, r.text
    locs = [err["loc"] for err in r.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert app.c.graph.stats()["edges"] == 0
    assert app.audit.records == []


def test_the_scored_payment_is_ingested_after_scoring(app: App) -> None:
    before = app.c.graph.stats()
    assert app.client.post("/v1/score", json=body()).status_code == 200
    after = app.c.graph.stats()
    assert after["transaction"] == before["transaction"] + 1
    assert after["edges"] == before["edges"] + 5
    second = body(transaction_id="tx-2", event_time=at(TEN_AM + 600).isoformat(), merchant_id="m-2")
    later = payment(
        "tx-2",
        TEN_AM + 600,
        account="acc-1",
        card="card-1",
        merchant="m-2",
        device="dev-1",
        ip="10.1.2.3",
    )
    seen = compute_features(later, app.c.features).as_dict()
    assert seen["account_count_1h"] == 1.0
    assert seen["card_count_1h"] == 1.0
    assert seen["first_seen_device_for_account"] == 0.0
    assert app.client.post("/v1/score", json=second).status_code == 200
    assert app.c.graph.stats()["transaction"] == before["transaction"] + 2


def test_rescoring_the_same_transaction_does_not_ingest_it_twice(app: App) -> None:
    assert app.client.post("/v1/score", json=body()).status_code == 200
    edges = app.c.graph.stats()["edges"]
    assert app.client.post("/v1/score", json=body()).status_code == 200
    assert app.c.graph.stats()["edges"] == edges


def test_events_are_ingested_and_bad_ones_dead_lettered(app: App) -> None:
    good = [
        to_record(login("l1", 0, account="acc-1", device="dev-9", ip="10.9.9.9")),
        to_record(link("s1", 1, src="acc-2", dst="acc-1", kind="p2p_transfer", amount=20)),
    ]
    bad_amount = to_record(
        link("s2", 2, src="acc-2", dst="acc-1", kind="p2p_transfer", amount=5)
    ) | {"amount": -5}
    bad_ip = to_record(payment("p9", 3)) | {"ip": "nope"}
    records = [good[0], bad_amount, good[1], bad_ip, good[0]]
    r = app.client.post("/v1/events", json=records)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["accepted"], out["duplicates"]) == (2, 1)
    assert [(x["index"], x["field"]) for x in out["rejected"]] == [(1, "amount"), (3, "ip")]
    assert all(x["reason"] for x in out["rejected"])
    letters = app.dead_letters.records
    assert [(d["field"], d["value"]) for d in letters] == [("amount", bad_amount), ("ip", bad_ip)]
    assert [d["topic"] for d in letters] == ["social-events", "payments"]
    assert app.c.graph.stats()["device"] == 1
    assert app.c.graph.stats()["edges"] == 3


def test_a_payment_dated_in_the_future_is_refused_and_the_graph_keeps_what_it_holds(
    app: App,
) -> None:
    # One payment in the year 3000 would have been the store's "newest event": its retention
    # sweep then expired everything older, all of it, behind a 200.
    assert app.client.post("/v1/score", json=body()).status_code == 200
    held = app.c.graph.stats()
    future = "3000-01-01T00:00:00+00:00"
    r = app.client.post("/v1/score", json=body(transaction_id="tx-2", event_time=future))
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "event_time"]
    assert "after this host's clock" in problem["msg"]
    events = [to_record(login("l-future", 0, account="acc-1", device="dev-1"))]
    events[0]["event_time"] = future
    out = app.client.post("/v1/events", json=events).json()
    assert [(x["index"], x["field"]) for x in out["rejected"]] == [(0, "event_time")]
    assert [d["field"] for d in app.dead_letters.records] == ["event_time"]
    assert app.c.graph.stats() == held
    assert app.c.graph.transaction("tx-1") is not None
    r = app.client.post("/v1/score", json=body(transaction_id="tx-3", amount="12"))
    assert r.status_code == 422
    metrics = app.client.get("/metrics").text
    for field in ("event_time", "amount"):
        line = f'riskgraph_invalid_requests_total{{field="{field}",route="/v1/score"}} 1.0'
        assert line in metrics


def test_an_event_whose_type_is_not_a_string_is_dead_lettered_not_a_500(app: App) -> None:
    good = to_record(login("l1", 0, account="acc-1", device="dev-9"))
    records: list[Any] = [good, {**good, "event_id": "l2", "type": ["device"]}, {"type": {}}]
    r = app.client.post("/v1/events", json=[*records, {**good, "event_id": "l3"}])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 2  # the records after the bad ones are read too
    assert [(x["index"], x["field"]) for x in out["rejected"]] == [(1, "type"), (2, "type")]
    assert len(app.dead_letters.records) == 2


def test_ops_endpoints(app: App) -> None:
    assert app.client.get("/healthz").json() == {"status": "ok"}
    ready = app.client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["model_version"] == "gnn-test-1"
    assert ready["policy_revision"] == source_revision()
    assert ready["graph"]["edges"] == 0
    assert app.client.post("/v1/score", json=body()).status_code == 200
    metrics = app.client.get("/metrics")
    assert metrics.status_code == 200
    assert "riskgraph_stage_latency_ms_bucket{" in metrics.text
    for stage in ("auth", "queue", "gate_policy", "sampling", "features", "gnn", "audit"):
        assert f'stage="{stage}"' in metrics.text
    assert "riskgraph_batch_size_bucket{" in metrics.text
    scores = r'riskgraph_scores_total\{action="\w+",rung="full",served_by="gnn"\} 1\.0'
    assert re.search(scores, metrics.text)
    assert 'riskgraph_score_requests_total{outcome="scored"} 1.0' in metrics.text


def test_gate_denial_is_403_and_audited(tmp_path: Path, bundle: ModelBundle) -> None:
    kill = {"riskgraph": {"gate": {"config": {"kill_switch": True}}}}
    with make_app(tmp_path, bundle, policy=WasmPolicy(data_overrides=kill)) as a:
        r = a.client.post("/v1/score", json=body())
        assert r.status_code == 403
        assert "kill_switch" in r.json()["detail"]
        (record,) = a.audit.records
        assert record["kind"] == "inference_denied"
        assert record["request_id"] == "tx-1"
        assert record["reasons"] == ["kill_switch"]
        assert a.c.graph.stats()["edges"] == 0


class BrokenDecisions(PolicyEvaluator):
    """A policy whose gate answers but whose decision rules then fail, after the payment was
    scored (an unreachable OPA server, which fails at the gate, is the next test but one)."""

    revision = "broken-1"

    def _gate(self, request: dict[str, Any]) -> GateResult:
        return GateResult(True, [], self.revision)

    def _decide(self, request: dict[str, Any]) -> DecisionResult:
        raise ConnectionError("policy engine unreachable")

    def _review(self, request: dict[str, Any]) -> ReviewResult:
        raise ConnectionError("policy engine unreachable")


def test_a_failing_policy_fails_closed_with_503(tmp_path: Path, bundle: ModelBundle) -> None:
    with make_app(tmp_path, bundle, policy=BrokenDecisions()) as a:
        r = a.client.post("/v1/score", json=body())
        assert r.status_code == 503
        assert "unreachable" in r.json()["detail"]
        (record,) = a.audit.records
        assert record["kind"] == "inference_failed_closed"
        assert record["request_id"] == "tx-1"
        assert "unreachable" in record["error"]
        assert record["hash"] == chain_hash(
            record["prev"], {k: v for k, v in record.items() if k != "hash"}
        )
        assert a.c.graph.stats()["edges"] == 0  # not scored, so not ingested either


def test_oversized_bodies_are_413(tmp_path: Path, bundle: ModelBundle) -> None:
    with make_app(tmp_path, bundle, max_body_bytes=512) as a:
        r = a.client.post(
            "/v1/score",
            json=body(merchant_id="m" * 120, ip="1" * 100, account_id="a" * 120, card_id="c" * 120),
        )
        assert r.status_code == 413
        assert a.client.post("/v1/score", json=body()).status_code == 200


def test_a_chunked_body_is_held_to_the_same_limit(tmp_path: Path, bundle: ModelBundle) -> None:
    import json

    events = [to_record(login(f"d{i}", i, account=f"a{i}", device=f"dv{i}")) for i in range(20)]
    data = json.dumps(events).encode()

    def chunked(payload: bytes) -> Any:  # a generator body: sent without Content-Length
        for i in range(0, len(payload), 256):
            yield payload[i : i + 256]

    json_type = {"content-type": "application/json"}
    with make_app(tmp_path, bundle, max_body_bytes=len(data) - 1) as a:
        r = a.client.post("/v1/events", content=chunked(data), headers=json_type)
        assert r.status_code == 413
        assert a.c.graph.stats()["device"] == 0  # nothing of it was read into the stores
        fits = json.dumps(events[:10]).encode()
        r = a.client.post("/v1/events", content=chunked(fits), headers=json_type)
        assert (r.status_code, r.json()["accepted"]) == (200, 10)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_amount_is_a_422_naming_it_not_a_500(app: App, value: str) -> None:
    raw = re.sub(r'"amount": [0-9.]+', f'"amount": {value}', json_text(body()))
    r = app.client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "amount"]]
    assert app.c.graph.stats()["edges"] == 0


@pytest.mark.parametrize("value", ["12", True], ids=["string", "bool"])
def test_an_amount_that_is_not_a_number_is_a_422(app: App, value: object) -> None:
    r = app.client.post("/v1/score", json=body(amount=value))
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "amount"]]
    events = [to_record(payment("p-str", 3)) | {"amount": value}]
    out = app.client.post("/v1/events", json=events).json()
    assert [(x["index"], x["field"]) for x in out["rejected"]] == [(0, "amount")]
    assert app.c.graph.stats()["edges"] == 0


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_credential_with_non_ascii_characters_is_a_401(app: App, header: str) -> None:
    value = ("Bearer abc.\u00e9" if header == "Authorization" else "x.\u00e9").encode("latin-1")
    for method, path in (("GET", "/v1/cases"), ("POST", "/v1/score"), ("GET", "/readyz")):
        r = app.client.request(method, path, json=body(), headers={header: value})
        assert r.status_code == 401, (path, r.text)


def test_an_unreachable_opa_server_fails_closed_with_503(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    # The real OPA client against a port where nothing listens: the gate cannot be asked.
    from services.policy_opa import OpaServerPolicy

    dead = OpaServerPolicy("http://127.0.0.1:9", timeout_s=0.2)
    with make_app(tmp_path, bundle, policy=dead) as a:
        r = a.client.post("/v1/score", json=body())
        assert r.status_code == 503
        assert "OPA server unreachable" in r.json()["detail"]
        (record,) = a.audit.records
        assert record["kind"] == "inference_failed_closed"
        assert "OPA server unreachable" in record["error"]
        assert a.c.graph.stats()["edges"] == 0


def test_a_chunked_body_cut_off_by_a_disconnect_never_reaches_the_app() -> None:
    import asyncio

    from services.api.app import BodyLimit

    called: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # what would score it
        called.append(await receive())

    messages = [
        {"type": "http.request", "body": b'{"a":1}', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[object] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": []}
    asyncio.run(BodyLimit(app, max_bytes=1024)(scope, receive, send))
    assert called == [] and sent == []  # a partial body is not a request
    messages[:] = [{"type": "http.request", "body": b'{"a":1}', "more_body": False}]
    asyncio.run(BodyLimit(app, max_bytes=1024)(scope, receive, send))
    assert called == [{"type": "http.request", "body": b'{"a":1}', "more_body": False}]
