"""``RISKGRAPH_INFERENCE_PROCESS``: the engine in a child process answers exactly as in-process.

Two APIs over copies of the same history: one scores in its own interpreter, the other in a
child process (:mod:`gnn.engine_process`). Both then take the same events over ``/v1/events``
and score the same payments in the same order: the child must see the history (the snapshot),
the events applied after it started and the payments scored before (the mirror), and give
the same scores. The tree and policy rungs are answered by the parent's own engine (a
router), with the same scores as the child would give.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import to_record
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor
from gnn.artifact import ModelBundle
from gnn.engine import ScoringEngine
from gnn.engine_process import EngineProcess, EngineProcessDied, MirroredIngestor, RungRouter
from services.api.app import create_app
from services.audit import InMemoryAuditSink
from services.container import Container, build_container
from services.settings import Settings
from tests.factories import link, login, payment

HEADERS = {"Authorization": "Bearer dev-key"}
HOUR = 3600.0


def _history() -> list[Any]:
    out: list[Any] = []
    for i in range(40):
        acc = f"acc-{i % 5}"
        out.append(login(f"l{i}", i * HOUR, account=acc, device=f"dev-{i % 3}", ip="10.0.0.1"))
        out.append(
            payment(
                f"h{i}",
                i * HOUR + 60,
                account=acc,
                card=f"card-{i % 5}",
                merchant=f"m-{i % 4}",
                amount=5.0 + 7 * i,
                device=f"dev-{i % 3}",
            )
        )
    return out


@contextmanager
def _api(tmp: Path, bundle: ModelBundle, in_child: bool) -> Iterator[tuple[TestClient, Container]]:
    graph, features = InMemoryGraphStore(), InMemoryFeatureStore()
    history = Ingestor(graph, features, InMemoryEventSink())
    for ev in _history():
        history.apply(ev)
    settings = Settings(
        audit_path=tmp / "audit.log",
        dead_letter_path=tmp / "dead.jsonl",
        device="cpu",
        default_deadline_ms=5_000.0,
        inference_process=in_child,
    )
    container = build_container(
        settings,
        bundle=bundle,
        graph=graph,
        features=features,
        audit=InMemoryAuditSink(),
        dead_letters=InMemoryEventSink(),
    )
    try:
        with TestClient(create_app(container), headers=HEADERS) as client:
            yield client, container
    finally:
        container.close()


def _script(client: TestClient) -> list[tuple[float, str, str]]:
    later = [
        login("l-new", 50 * HOUR, account="acc-9", device="dev-1", ip="10.0.0.9"),
        link("s-new", 50 * HOUR + 1, src="acc-9", dst="acc-2", kind="p2p_transfer", amount=30),
    ]
    r = client.post("/v1/events", json=[to_record(e) for e in later])
    assert (r.status_code, r.json()["accepted"]) == (200, 2), r.text
    out = []
    for i in range(12):
        p = payment(
            f"q{i}",
            51 * HOUR + i * 60,
            account="acc-9" if i % 3 == 0 else f"acc-{i % 5}",
            card=f"card-{i % 5}",
            merchant=f"m-{i % 4}",
            amount=20.0 + 13 * i,
            device="dev-1",
        )
        req = {
            "transaction_id": p.event_id,
            "event_time": p.event_time.isoformat(),
            "account_id": p.account_id,
            "card_id": p.card_id,
            "merchant_id": p.merchant_id,
            "amount": p.amount,
            "device_id": p.device_id,
        }
        r = client.post("/v1/score", json=req)
        assert r.status_code == 200, r.text
        ans = r.json()
        out.append((ans["score"], ans["served_by"], ans["rung"]))
    return out


def test_the_engine_in_a_child_process_scores_as_in_process(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with _api(tmp_path / "a", bundle, in_child=False) as (client, container):
        assert container.inference is None
        here = _script(client)
    with _api(tmp_path / "b", bundle, in_child=True) as (client, container):
        assert container.inference is not None
        assert container.inference.pid not in (None, os.getpid())
        there = _script(client)
    assert [(s, r) for _, s, r in there] == [("gnn", "full")] * 12
    assert len({round(x, 6) for x, _, _ in here}) > 1  # the neighbourhoods differ
    for (a, _, _), (b, _, _) in zip(here, there, strict=True):
        assert abs(a - b) < 1e-6


def test_the_tree_and_policy_rungs_are_answered_in_this_process(
    tmp_path: Path, bundle: ModelBundle
) -> None:
    graph, features = InMemoryGraphStore(), InMemoryFeatureStore()
    ingestor = MirroredIngestor(graph, features, InMemoryEventSink())
    for ev in _history()[:40]:
        ingestor.apply(ev)
    local = ScoringEngine(bundle, graph, features, device="cpu")
    child = EngineProcess(bundle, graph, features, device="cpu")
    ingestor.mirror = child
    for ev in _history()[40:]:  # after the snapshot: these reach the child through the mirror
        ingestor.apply(ev)
    router = RungRouter(local, child)
    queries = [
        payment(f"r{i}", 45 * HOUR + i, account=f"acc-{i}", card=f"card-{i}", amount=9.0 + i)
        for i in range(4)
    ]
    for rung in ("tree", "policy"):
        here, _ = router.infer(queries, rung)
        there, _ = child.infer(queries, rung)
        assert [s.rung for s in here] == [rung] * 4
        assert [s.score for s in here] == pytest.approx([s.score for s in there], abs=1e-9)
        assert [s.features for s in here] == [s.features for s in there]
    child.close()
    # The child is gone: GNN rungs fail, the rungs answered here do not notice.
    with pytest.raises(EngineProcessDied):
        router.infer(queries, "full")
    assert [s.rung for s in router.infer(queries, "tree")[0]] == ["tree"] * 4
    assert [s.rung for s in router.infer(queries, "policy")[0]] == ["policy"] * 4
