"""Analyst review through the API: cases from flagged payments, the review policy on every
action, evidence, verdicts that become labels and precedents, rings, and the audit trail.

The decision policy's review threshold is set to 0 here so that every payment is flagged and
opens a case; everything else is production's wiring (Wasm policy, in-memory stores).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feature_stream.events import LabelEvent, parse_event
from feature_stream.graph_store import LABEL_FRAUD, LABEL_UNKNOWN
from feature_stream.kafka_io import KafkaEventSource
from gnn.artifact import ModelBundle
from services.auth import issue_token
from services.cases.similar import SimilarCaseIndex
from services.policy_opa import WasmPolicy
from services.settings import DEV_TOKEN_SECRET
from tests.services.api_harness import App, body, make_app

BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
FLAG_ALL = {"riskgraph": {"decision": {"config": {"review_threshold": 0.0}}}}


def token(roles: list[str], user: str = "ana", tenant: str = "default") -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_token(DEV_TOKEN_SECRET, user, tenant, roles)}


ANALYST = token(["analyst"])
SENIOR = token(["senior_analyst"], user="sam")
AUDITOR = token(["auditor"], user="aud")


def pay(tx: str, seconds_ago: float, **changes: Any) -> dict[str, Any]:
    """A payment ``seconds_ago`` before now (verdicts are labels at the wall clock's time)."""
    when = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return body(transaction_id=tx, event_time=when.isoformat(), **changes)


@pytest.fixture
def review(tmp_path: Path, bundle: ModelBundle) -> Iterator[App]:
    with make_app(tmp_path, bundle, policy=WasmPolicy(data_overrides=FLAG_ALL)) as a:
        yield a


def score(a: App, payload: dict[str, Any]) -> dict[str, Any]:
    r = a.client.post("/v1/score", json=payload)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def analyst_records(a: App, action: str) -> list[dict[str, Any]]:
    return [r for r in a.audit.records if r["kind"] == "analyst_action" and r["action"] == action]


def test_a_flagged_payment_opens_a_case_in_the_queue(review: App) -> None:
    out = score(review, pay("tx-a", 600))
    assert out["action"] == "review"
    inference = [r for r in review.audit.records if r["kind"] == "inference"]
    assert inference[-1]["case_id"] == "case-tx-a"

    r = review.client.get("/v1/cases", headers=ANALYST)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 1
    (case,) = page["cases"]
    assert case["case_id"] == "case-tx-a" and case["status"] == "open"
    assert case["score"] == pytest.approx(out["score"], abs=1e-6)
    # an analyst sees PII masked; the merchant is not PII
    assert case["entities"]["account_id"] == "•••cc-1"
    assert case["entities"]["merchant_id"] == "m-1"
    senior = review.client.get("/v1/cases", headers=SENIOR).json()
    assert senior["cases"][0]["entities"]["account_id"] == "acc-1"
    viewed = analyst_records(review, "view_queue")
    assert [(r["user"], r["outcome"]) for r in viewed] == [("ana", "ok"), ("sam", "ok")]


def test_the_case_page_has_evidence_subgraph_and_timeline(review: App) -> None:
    score(review, pay("tx-old", 900, account_id="acc-9", card_id="card-9"))
    score(review, pay("tx-b", 300))
    r = review.client.get("/v1/cases/case-tx-b", headers=ANALYST)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["case"]["transaction_id"] == "tx-b"
    assert "tx-b" in page["evidence"]["narrative"]
    graph = page["subgraph"]
    types = {n["type"] for n in graph["nodes"]}
    assert {"transaction", "account", "card", "device"} <= types
    assert len(graph["edges"]) >= 4
    # tx-old shares device and IP with tx-b: it is in the neighbourhood and on the timeline
    assert any(row["type"] == "payment" for row in page["timeline"])
    assert all("acc-1" not in n["id"] for n in graph["nodes"])  # masked for an analyst


def test_a_verdict_labels_the_graph_is_audited_and_changes_the_next_connected_score(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    # same device, a minute ahead: after the verdict below, however slow the machine
    later = pay("tx-next", -60, account_id="acc-2", card_id="card-2")
    with make_app(tmp_path / "twin", bundle, policy=WasmPolicy(data_overrides=FLAG_ALL)) as twin:
        score(twin, pay("tx-a", 600))
        without = score(twin, later)
    with make_app(tmp_path / "real", bundle, policy=WasmPolicy(data_overrides=FLAG_ALL)) as a:
        score(a, pay("tx-a", 600))
        assert a.c.graph.label("tx-a", time.time() + 60) == LABEL_UNKNOWN
        r = a.client.post(
            "/v1/cases/case-tx-a/verdict",
            json={"verdict": "fraud", "note": "customer confirmed card stolen"},
            headers=ANALYST,
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["case"]["status"] == "fraud" and answer["case"]["verdict_by"] == "ana"
        (record,) = analyst_records(a, "label")
        assert (record["case_id"], record["verdict"], record["user"]) == (
            "case-tx-a",
            "fraud",
            "ana",
        )
        assert (
            record["seq"] == answer["receipt"]["seq"]
            and record["hash"] == answer["receipt"]["hash"]
        )
        assert "stolen" not in str(record)  # the note is kept as a keyed hash only
        assert a.c.graph.label("tx-a", time.time() + 1) == LABEL_FRAUD
        with_verdict = score(a, later)
    assert "known_fraud_on_device" in with_verdict["reasons"]
    assert "known_fraud_on_device" not in without["reasons"]
    assert with_verdict["score"] != pytest.approx(without["score"], abs=1e-9)


def test_a_resolved_case_becomes_a_precedent_with_shared_entities(review: App) -> None:
    score(review, pay("tx-a", 900))
    assert (
        review.client.post(
            "/v1/cases/case-tx-a/verdict", json={"verdict": "fraud"}, headers=ANALYST
        ).status_code
        == 200
    )
    out = score(review, pay("tx-c", 300, account_id="acc-3", card_id="card-3"))
    assert out["similar_cases"] == {"fraud": 1, "legit": 0}
    page = review.client.get("/v1/cases/case-tx-c", headers=ANALYST).json()
    (precedent,) = page["evidence"]["precedents"]
    assert precedent["case_id"] == "case-tx-a" and precedent["status"] == "fraud"
    assert set(precedent["shared_entities"]) == {"merchant", "device", "ip"}
    assert page["evidence"]["precedent_mix"] == {"fraud": 1, "legit": 0}
    assert "[case-tx-a]" in page["evidence"]["narrative"]


def test_the_review_policy_gates_every_action(review: App) -> None:
    score(review, pay("tx-a", 600))
    # an auditor may look but not label; the refusal names the reason and is audited
    assert review.client.get("/v1/cases/case-tx-a", headers=AUDITOR).status_code == 200
    r = review.client.post(
        "/v1/cases/case-tx-a/verdict", json={"verdict": "legit"}, headers=AUDITOR
    )
    assert r.status_code == 403
    assert r.json()["detail"]["reasons"] == ["action_not_permitted"]
    denied = analyst_records(review, "label")[-1]
    assert (denied["outcome"], denied["user"]) == ("denied", "aud")
    # another tenant's analyst sees nothing of this tenant
    other = token(["analyst"], tenant="acme")
    assert review.client.get("/v1/cases/case-tx-a", headers=other).status_code == 403
    assert review.client.get("/v1/cases", headers=other).json()["total"] == 0
    # a payment client has no analyst role
    assert review.client.get("/v1/cases").status_code == 403
    assert review.client.get("/v1/cases/case-nope", headers=ANALYST).status_code == 404
    bad = review.client.post(
        "/v1/cases/case-tx-a/verdict", json={"verdict": "maybe"}, headers=ANALYST
    )
    assert bad.status_code == 422 and "verdict" in str(bad.json()["detail"][0]["loc"])


def test_alerts_sharing_a_device_form_a_ring_with_a_bulk_verdict(review: App) -> None:
    score(review, pay("tx-r1", 900, account_id="acc-r1", card_id="card-r1", ip="10.9.9.1"))
    score(review, pay("tx-r2", 600, account_id="acc-r2", card_id="card-r2", ip="10.9.9.2"))
    score(
        review,
        pay("tx-lone", 300, account_id="acc-x", card_id="card-x", device_id="dev-x", ip="10.9.9.3"),
    )
    rings = review.client.get("/v1/rings", headers=SENIOR).json()["rings"]
    (ring,) = rings
    assert set(ring["case_ids"]) == {"case-tx-r1", "case-tx-r2"}
    assert {"kind": "device", "value": "dev-1"} in ring["shared_entities"]
    assert (
        review.client.post(
            f"/v1/rings/{ring['ring_id']}/verdict", json={"verdict": "fraud"}, headers=ANALYST
        ).status_code
        == 403
    )  # bulk labelling needs senior_analyst
    r = review.client.post(
        f"/v1/rings/{ring['ring_id']}/verdict", json={"verdict": "fraud"}, headers=SENIOR
    )
    assert r.status_code == 200, r.text
    assert {c["status"] for c in r.json()["cases"]} == {"fraud"}
    assert len(analyst_records(review, "bulk_label")) >= 2
    assert review.client.get("/v1/rings", headers=SENIOR).json()["rings"] == []


def test_the_index_is_saved_at_shutdown_and_caught_up_at_start(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    with make_app(tmp_path, bundle, policy=WasmPolicy(data_overrides=FLAG_ALL)) as a:
        score(a, pay("tx-a", 900))
        score(a, pay("tx-b", 600, account_id="acc-b", card_id="card-b"))
        a.client.post("/v1/cases/case-tx-a/verdict", json={"verdict": "fraud"}, headers=ANALYST)
        # resolved behind the service's back (e.g. a crash after the store's write)
        a.c.review.store.set_verdict("case-tx-b", "legit", "ops", "", time.time())
        assert a.c.review.index.ids() == ["case-tx-a"]
    saved = SimilarCaseIndex.load(tmp_path / "cases.faiss")
    assert saved.ids() == ["case-tx-a"]
    # mark the saved copy, to see that start-up loads it rather than rebuilding from the store
    saved.add("case-marker", np.ones(saved.dim, dtype=np.float32))
    saved.save(tmp_path / "cases.faiss")
    with make_app(tmp_path, bundle, policy=WasmPolicy(data_overrides=FLAG_ALL)) as again:
        assert sorted(again.c.review.index.ids()) == ["case-marker", "case-tx-a", "case-tx-b"]


@pytest.mark.integration
def test_in_service_mode_a_verdict_label_goes_to_the_labels_topic(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    """Needs Kafka (``deploy/services.sh up kafka``): the label reaches the topic the stream
    workers read, and this replica's graph has it too."""
    prefix = f"t-{uuid.uuid4().hex[:8]}-"
    with make_app(
        tmp_path,
        bundle,
        policy=WasmPolicy(data_overrides=FLAG_ALL),
        mode="service",
        kafka_bootstrap=BOOTSTRAP,
        topic_prefix=prefix,
    ) as a:
        score(a, pay("tx-a", 600))
        r = a.client.post("/v1/cases/case-tx-a/verdict", json={"verdict": "fraud"}, headers=ANALYST)
        assert r.status_code == 200, r.text
        assert a.c.graph.label("tx-a", time.time() + 1) == LABEL_FRAUD
    (record,) = [
        r.value for r in KafkaEventSource(BOOTSTRAP, [prefix + "labels"], idle_timeout_s=3)
    ]
    label = parse_event(record)
    assert isinstance(label, LabelEvent)
    assert (label.transaction_id, label.is_fraud, label.source) == ("tx-a", True, "analyst")
