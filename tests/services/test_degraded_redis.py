"""Redis restarted under a live scoring API: answers keep coming (never a 5xx), flagged as
degraded while Redis is away, and nothing is lost. Runs against the real Redis that
``deploy/services.sh`` starts, and stops and restarts it through the same script."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import parse_event
from feature_stream.feature_redis import RedisFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from gnn.artifact import ModelBundle
from services.api.app import create_app
from services.audit import InMemoryAuditSink
from services.container import Container, build_container
from services.settings import Settings
from tests.services.api_harness import TEN_AM, body

pytestmark = pytest.mark.integration

URL = os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "services.sh"


def _redis(action: str) -> None:
    subprocess.run(["bash", str(SERVICES), action, "redis"], check=True, timeout=120)


@pytest.fixture
def api(tmp_path: Path, bundle: ModelBundle) -> Iterator[tuple[TestClient, Container]]:
    try:
        redis.Redis.from_url(URL).ping()
    except Exception as exc:  # a missing server fails the test, never skips it
        pytest.fail(f"Redis is not reachable at {URL} ({exc}); deploy/services.sh up redis")
    prefix = f"rg:test:{uuid.uuid4().hex[:12]}:"
    container = build_container(
        Settings(
            audit_path=tmp_path / "audit.log",
            dead_letter_path=tmp_path / "dead.jsonl",
            device="cpu",
            default_deadline_ms=2_000.0,
        ),
        bundle=bundle,
        graph=InMemoryGraphStore(),
        features=RedisFeatureStore(URL, prefix=prefix, socket_timeout_s=0.2),
        audit=InMemoryAuditSink(),
        dead_letters=InMemoryEventSink(),
    )
    try:
        with TestClient(
            create_app(container), headers={"Authorization": "Bearer dev-key"}
        ) as client:
            yield client, container
    finally:
        container.close()
        _redis("up")  # whatever happened, leave Redis running for the tests after this one
        client_ = redis.Redis.from_url(URL)
        for key in client_.scan_iter(f"{prefix}*"):
            client_.delete(key)


def _score(client: TestClient, tx: str, minute: int) -> dict[str, object]:
    r = client.post("/v1/score", json=body(transaction_id=tx, event_time=_at(minute)))
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def _at(minute: int) -> str:
    from tests.factories import at

    return at(TEN_AM + 60 * minute).isoformat()


def test_redis_restart_degrades_with_a_flag_and_loses_nothing(
    api: tuple[TestClient, Container],
) -> None:
    client, container = api
    assert _score(client, "tx-before", 0)["degraded"] == []

    _redis("down")
    away = _score(client, "tx-away", 1)
    assert away["degraded"] == ["features_unavailable", "features_not_recorded"]
    assert away["served_by"] == "gnn"  # the graph still informs the score
    assert isinstance(container.dead_letters, InMemoryEventSink)
    kept = [d for d in container.dead_letters.records if d["value"]["event_id"] == "tx-away"]
    assert len(kept) == 1 and "not recorded" in kept[0]["reason"]
    assert container.graph.transaction("tx-away") is not None
    audited = [r for r in container.audit.records if r.get("request_id") == "tx-away"]  # type: ignore[attr-defined]
    assert audited[0]["degraded"] == away["degraded"]
    metrics = client.get("/metrics").text
    assert 'riskgraph_degraded_total{reason="features_unavailable"} 1.0' in metrics

    _redis("up")
    after = _score(client, "tx-after", 2)
    assert after["degraded"] == []
    # Replaying the dead letter records what the outage held back.
    replayed = parse_event(kept[0]["value"])
    t = replayed.event_time.timestamp()
    assert container.features.window("card:card-1", t, t + 1).count == 0
    assert container.ingestor.apply(replayed)
    assert container.features.window("card:card-1", t, t + 1).count == 1
