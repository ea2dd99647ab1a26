"""``build_container`` in service mode, end to end against the real servers.

Kafka → the stream worker (in-process, as in ``tests/feature_stream/test_stream_kafka.py``) →
Neo4j + Redis + graph changelog → the API built from ``Settings(mode="service")`` with no
store passed in → ``POST /v1/score``. Needs Kafka, Neo4j and Redis from
``deploy/services.sh up kafka neo4j redis``: a missing server fails these tests, never skips
them. The module uses its own topic prefix, Neo4j namespace and Redis key prefix.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import neo4j
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from feature_stream.event_io import FileEventSource, InMemoryEventSink
from feature_stream.events import DeviceEvent, Payment, SocialEvent, parse_event
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_redis import RedisFeatureStore
from feature_stream.generator import GeneratorConfig, generate
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_neo4j import Neo4jGraphStore
from feature_stream.graph_schema import TXN
from feature_stream.graph_window import WindowedGraphStore
from feature_stream.ingest import Ingestor
from feature_stream.kafka_io import KafkaEventSink, produce_stream
from feature_stream.stream_app import StreamConfig, StreamWorker, make_app
from gnn.artifact import ModelBundle
from services.api.app import create_app
from services.audit import InMemoryAuditSink
from services.cases.store_neo4j import delete_cases
from services.container import Container, build_container
from services.settings import Settings
from tests.services_up import caught_up, require

BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
NEO4J_URI = os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687")
REDIS_URL = os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0")
DAY = 86400.0
HEADERS = {"Authorization": "Bearer dev-key"}


# -- settings (no server needed) -------------------------------------------------------------
def test_service_mode_defaults_to_the_real_backends_and_names_override_them() -> None:
    s = Settings(mode="service")
    assert (s.graph_backend, s.feature_backend, s.case_backend) == ("neo4j", "redis", "neo4j")
    assert Settings().graph_backend == "memory"
    assert Settings(mode="service", graph_backend="memory").graph_backend == "memory"
    with pytest.raises(ValidationError, match="neo4j"):
        Settings(graph_backend="janus")
    with pytest.raises(ValidationError, match="riskgraph produce"):
        Settings(mode="service", history_dir=Path("stream"))


# -- the deployment: topics filled, the worker running ----------------------------------------
@dataclass
class Deployment:
    prefix: str
    namespace: str
    directory: Path
    events: list[Any]
    worker: StreamWorker


class WorkerThread:
    """The stream worker on its own thread and event loop, until :meth:`stop`."""

    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(worker.run(),), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(timeout=60)
        self.loop.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require("kafka", "neo4j", "redis")
    directory = tmp_path_factory.mktemp("stream")
    generate(
        GeneratorConfig(
            n_accounts=200,
            n_merchants=50,
            days=14,
            rings=1,
            takeover_waves=1,
            card_testing_bursts=1,
            mule_chains=1,
            device_farm_episodes=1,
            bust_out_merchants=1,
            invalid_rate=0.0,
        ),
        directory,
        progress=False,
    )
    tag = uuid.uuid4().hex[:8]
    prefix, namespace = f"t-svc-{tag}-", f"t-svc-{tag}"
    sink = KafkaEventSink(BOOTSTRAP, prefix=prefix)
    try:  # `riskgraph produce`'s code path
        produce_stream(directory, sink, progress=False)
    finally:
        sink.close()
    cfg = StreamConfig(
        kafka_bootstrap=BOOTSTRAP,
        topic_prefix=prefix,
        namespace=namespace,
        graph_backend="neo4j",
        feature_backend="redis",
        neo4j_uri=NEO4J_URI,
        redis_url=REDIS_URL,
    )
    worker = make_app(cfg)  # Neo4j and Redis, built by name
    running = WorkerThread(worker)
    try:
        deadline = time.monotonic() + 180
        while not asyncio.run(caught_up(cfg.group, prefix)):
            assert running.thread.is_alive(), "the stream worker stopped"
            assert time.monotonic() < deadline, "the stream worker did not catch up"
            time.sleep(0.5)
        events = [parse_event(r.value) for r in FileEventSource(directory)]
        yield Deployment(prefix, namespace, directory, events, worker)
    finally:
        running.stop()
        graph, features = worker.graph, worker.features
        assert isinstance(graph, Neo4jGraphStore) and isinstance(features, RedisFeatureStore)
        try:
            with neo4j.GraphDatabase.driver(NEO4J_URI, auth=None) as driver:
                delete_cases(driver, namespace)
            graph.clear()
            features.clear()
        finally:
            graph.close()
            features.close()


def _service(d: Deployment, tmp: Path, bundle: ModelBundle, window_days: float) -> Container:
    """The API's container exactly as ``riskgraph serve`` builds it in service mode."""
    return build_container(
        Settings(
            mode="service",
            kafka_bootstrap=BOOTSTRAP,
            topic_prefix=d.prefix,
            namespace=d.namespace,
            neo4j_uri=NEO4J_URI,
            redis_url=REDIS_URL,
            window_days=window_days,
            audit_path=tmp / "audit.log",
            dead_letter_path=tmp / "dead.jsonl",
            audit_topic=d.prefix + "audit",
            device="cpu",
            default_deadline_ms=5_000.0,
        ),
        bundle=bundle,
    )


def _embedded(d: Deployment, tmp: Path, bundle: ModelBundle) -> Container:
    """An embedded container over the same events, ingested in-process."""
    graph, features = InMemoryGraphStore(), InMemoryFeatureStore()
    Ingestor(graph, features, InMemoryEventSink()).run(FileEventSource(d.directory))
    return build_container(
        Settings(
            audit_path=tmp / "audit.log",
            dead_letter_path=tmp / "dead.jsonl",
            device="cpu",
            default_deadline_ms=5_000.0,
        ),
        bundle=bundle,
        graph=graph,
        features=features,
        audit=InMemoryAuditSink(),
        dead_letters=InMemoryEventSink(),
    )


def _client(container: Container) -> TestClient:
    app = create_app(container)
    return TestClient(app, headers=HEADERS)


def _request(tx: str, t: float, **entities: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "transaction_id": tx,
        "event_time": datetime.fromtimestamp(t, UTC).isoformat(),
        "amount": 120.0,
        **entities,
    }


def _score(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _accepted_payments(worker: StreamWorker) -> float:
    return float(worker.metrics.accepted.labels("payment")._value.get())


def _end(d: Deployment) -> float:
    return max(e.ts for e in d.events if isinstance(e, Payment | DeviceEvent | SocialEvent))


@pytest.mark.integration
def test_service_mode_scores_from_window_and_neo4j_as_embedded_does(
    deployment: Deployment, bundle: ModelBundle, tmp_path: Path
) -> None:
    d = deployment
    pays = sorted((e for e in d.events if isinstance(e, Payment)), key=lambda p: p.ts)
    last = pays[-1]
    # q2: a brand-new account on a card and merchant none of q1's entities share.
    other = next(
        p
        for p in reversed(pays)
        if p.account_id != last.account_id
        and p.card_id != last.card_id
        and p.merchant_id != last.merchant_id
    )
    t = _end(d) + 3600
    q1 = _request(
        "svc-q1",
        t,
        account_id=last.account_id,
        card_id=last.card_id,
        merchant_id=last.merchant_id,
        device_id=last.device_id,
        ip=last.ip,
    )
    q2 = _request(
        "svc-q2", t + 60, account_id="acct-brand-new", card_id=other.card_id,
        merchant_id=other.merchant_id,
    )  # fmt: skip

    service = _service(d, tmp_path / "service", bundle, window_days=60)
    embedded = _embedded(d, tmp_path / "embedded", bundle)
    durable = Neo4jGraphStore(NEO4J_URI, namespace=d.namespace)
    try:
        assert isinstance(service.graph, WindowedGraphStore)  # built from settings alone
        with _client(service) as client, _client(embedded) as ref_client:
            # Ready only once the window holds the whole changelog.
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["graph"] == embedded.graph.stats()

            before = _accepted_payments(d.worker)
            s1 = _score(client, q1)
            # The scored payment goes API → Kafka → worker → Neo4j (the API never writes it).
            deadline = time.monotonic() + 60
            while durable.transaction("svc-q1") is None:
                assert time.monotonic() < deadline, "the scored payment never reached Neo4j"
                time.sleep(0.2)
            assert _accepted_payments(d.worker) == before + 1
            s2 = _score(client, q2)
            r1, r2 = _score(ref_client, q1), _score(ref_client, q2)
            metrics = client.get("/metrics").text
            # A replica whose changelog follower stopped no longer sees other writers: unready.
            assert service.graph.follower is not None
            service.graph.follower.close()
            gone = client.get("/readyz")
        assert gone.status_code == 503
        assert "graph changelog follower stopped" in gone.json()["detail"]
        # q1's entities are all in the window; q2's account is not: Neo4j samples it.
        assert 'riskgraph_graph_samples_total{reason="in_window",source="window"} 1.0' in metrics
        assert (
            'riskgraph_graph_samples_total{reason="unseen_entity",source="durable"} 1.0' in metrics
        )
        assert [s1["rung"], s2["rung"], r1["rung"], r2["rung"]] == ["full"] * 4
        assert s1["score"] == pytest.approx(r1["score"], abs=1e-5)
        assert s2["score"] == pytest.approx(r2["score"], abs=1e-5)
        # Neo4j's answer for q2 had neighbours: the card's and merchant's past payments.
        (g2,) = durable.sample([Payment.model_validate(_event(q2))], (15, 10))
        assert sum(1 for i in range(g2.num_nodes) if g2.node_type[i] == TXN) > 1
    finally:
        durable.close()
        service.close()
        embedded.close()


def _event(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "payment",
        "event_id": body["transaction_id"],
        **{k: v for k, v in body.items() if k != "transaction_id" and v is not None},
    }


@pytest.mark.integration
def test_an_account_active_only_before_the_window_is_sampled_from_neo4j(
    deployment: Deployment, bundle: ModelBundle, tmp_path: Path
) -> None:
    d = deployment
    end = _end(d)
    last_seen: dict[str, float] = {}
    for e in d.events:
        if isinstance(e, Payment | DeviceEvent):
            last_seen[e.account_id] = max(last_seen.get(e.account_id, e.ts), e.ts)
        elif isinstance(e, SocialEvent):
            for a in (e.src_account_id, e.dst_account_id):
                last_seen[a] = max(last_seen.get(a, e.ts), e.ts)
    quiet = sorted(a for a, t in last_seen.items() if t < end - 6 * DAY)
    assert quiet, "the generated stream should have accounts idle for the last 6 days"
    account = random.Random(0).choice(quiet)
    theirs = [e for e in d.events if isinstance(e, Payment) and e.account_id == account]
    card, merchant = theirs[-1].card_id, theirs[-1].merchant_id

    service = _service(d, tmp_path, bundle, window_days=5)
    try:
        graph = service.graph
        assert isinstance(graph, WindowedGraphStore)
        assert graph.window.horizon > last_seen[account]  # their history lies before it
        body = _request(
            "svc-quiet", end + 7200, account_id=account, card_id=card, merchant_id=merchant
        )
        with _client(service) as client:
            _score(client, body)
            metrics = client.get("/metrics").text
        assert (
            'riskgraph_graph_samples_total{reason="unseen_entity",source="durable"} 1.0' in metrics
        )
        assert 'riskgraph_graph_samples_total{reason="in_window",source="window"} 0.0' in metrics
        # The fallback finds the account's past payments; the window alone has none of them.
        q = Payment.model_validate(_event({**body, "transaction_id": "svc-quiet-2"}))
        (g,) = graph.sample([q], (15, 10))
        (w,) = graph.window.sample([q], (15, 10))
        past = {p.event_id for p in theirs}
        assert past & set(g.node_id)
        assert not past & set(w.node_id)
        assert graph.samples["unseen_entity"] == 2
    finally:
        service.close()
