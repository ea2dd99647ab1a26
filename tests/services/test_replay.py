"""The HTTP replay client against the real API on a loopback port: every payment answered
once, per-entity order kept, no two payments of one entity in flight together."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from feature_stream.event_io import FileEventSource, InMemoryEventSink
from feature_stream.events import InvalidEvent, Payment, parse_event
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.generator import generate
from feature_stream.graph_memory import InMemoryGraphStore
from gnn.artifact import ModelBundle
from gnn.train import DAY, stream_end
from services.api.app import create_app
from services.api.runner import ApiThread
from services.audit import InMemoryAuditSink
from services.container import build_container
from services.replay import ReplayConfig, ReplayError, entity_keys, replay_over_http
from services.settings import Settings
from tests.factories import SMALL_STREAM


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stream")
    generate(SMALL_STREAM, directory, progress=False)
    return directory


def _expected(stream: Path, since: float) -> tuple[list[Payment], int]:
    """Payments at or after ``since`` in stream order, and the count of invalid records."""
    payments, invalid = [], 0
    for rec in FileEventSource(stream):
        try:
            ev = parse_event(rec.value)
        except InvalidEvent:
            invalid += 1
            continue
        if isinstance(ev, Payment) and ev.event_time.timestamp() >= since:
            payments.append(ev)
    return payments, invalid


def test_replay_answers_every_payment_once_in_entity_order(
    stream: Path, tmp_path: Path, bundle: ModelBundle
) -> None:
    since = stream_end(stream) - 2 * DAY
    settings = Settings(
        audit_path=tmp_path / "audit.log",
        dead_letter_path=tmp_path / "dead.jsonl",
        device="cpu",
        default_deadline_ms=5_000.0,
    )
    audit, dead = InMemoryAuditSink(), InMemoryEventSink()
    container = build_container(
        settings,
        bundle=bundle,
        graph=InMemoryGraphStore(),
        features=InMemoryFeatureStore(),
        audit=audit,
        dead_letters=dead,
    )
    try:
        with ApiThread(create_app(container)) as url:
            results = replay_over_http(
                ReplayConfig(
                    base_url=url,
                    api_key="dev-key",
                    stream=stream,
                    since=since,
                    concurrency=8,
                    progress=False,
                )
            )
    finally:
        container.close()

    payments, invalid = _expected(stream, since)
    answered = [r["transaction_id"] for r in results]
    assert sorted(answered) == sorted(p.event_id for p in payments)
    assert len(dead.records) == invalid > 0

    # Scored (audited) in stream order within every entity.
    audited = [r["request_id"] for r in audit.records if r["kind"] == "inference"]
    position = {tx: i for i, tx in enumerate(audited)}
    order: dict[str, list[int]] = defaultdict(list)
    for p in payments:
        for key in entity_keys(p):
            order[key].append(position[p.event_id])
    out_of_order = [k for k, seq in order.items() if seq != sorted(seq)]
    assert out_of_order == []

    # Never two payments of one entity in flight together, yet payments did overlap.
    span = {r["transaction_id"]: r["client_span_s"] for r in results}
    by_id = {p.event_id: p for p in payments}
    clashes, overlaps = [], 0
    ordered = sorted(answered, key=lambda tx: span[tx][0])
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:  # stops at the first that starts after a ends
            if span[b][0] >= span[a][1]:
                break
            overlaps += 1
            if set(entity_keys(by_id[a])) & set(entity_keys(by_id[b])):
                clashes.append((a, b))
    assert clashes == []
    assert overlaps > 0


def test_replay_stops_on_a_refused_request(
    stream: Path, tmp_path: Path, bundle: ModelBundle
) -> None:
    settings = Settings(
        audit_path=tmp_path / "audit.log", dead_letter_path=tmp_path / "dead.jsonl", device="cpu"
    )
    container = build_container(
        settings,
        bundle=bundle,
        graph=InMemoryGraphStore(),
        features=InMemoryFeatureStore(),
        audit=InMemoryAuditSink(),
        dead_letters=InMemoryEventSink(),
    )
    try:
        with ApiThread(create_app(container)) as url:
            cfg = ReplayConfig(
                base_url=url,
                api_key="not-a-key",
                stream=stream,
                since=datetime.fromisoformat("2026-03-10T00:00:00+00:00").timestamp(),
                progress=False,
            )
            with pytest.raises(ReplayError, match="401"):
                replay_over_http(cfg)
    finally:
        container.close()
