"""The API under test: real in-memory ports, the real Wasm policy, FastAPI's test client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from feature_stream.event_io import InMemoryEventSink
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES
from feature_stream.graph_memory import InMemoryGraphStore
from gnn.artifact import ModelBundle
from gnn.baseline import TreeBaseline
from gnn.model import TemporalHeteroGNN
from services.api.app import create_app
from services.audit import InMemoryAuditSink
from services.container import Container, build_container
from services.policy import PolicyEvaluator
from services.settings import Settings
from tests.factories import at


@pytest.fixture(scope="session")
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURE_NAMES)))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0.8).astype(int)
    return ModelBundle(
        TemporalHeteroGNN(len(FEATURE_NAMES), hidden=16),
        TreeBaseline(max_iter=20).fit(x, y),
        {"version": "gnn-test-1", "fanouts": [15, 10]},
    )


class App:
    """A client and the container behind it."""

    def __init__(self, client: TestClient, container: Container) -> None:
        self.client = client
        self.c = container

    @property
    def audit(self) -> InMemoryAuditSink:
        assert isinstance(self.c.audit, InMemoryAuditSink)
        return self.c.audit

    @property
    def dead_letters(self) -> InMemoryEventSink:
        assert isinstance(self.c.dead_letters, InMemoryEventSink)
        return self.c.dead_letters


@contextmanager
def make_app(
    tmp_path: Path, bundle: ModelBundle, policy: PolicyEvaluator | None = None, **settings: Any
) -> Iterator[App]:
    # A generous default deadline: on a busy machine a first (cold) request can take longer
    # than production's default, and only the ladder tests mean to push requests down it.
    s = Settings(
        audit_path=tmp_path / "audit.log",
        dead_letter_path=tmp_path / "dead.jsonl",
        device="cpu",
        **{"default_deadline_ms": 2_000.0, **settings},
    )
    container = build_container(
        s,
        bundle=bundle,
        graph=InMemoryGraphStore(),
        features=InMemoryFeatureStore(),
        audit=InMemoryAuditSink(),
        dead_letters=InMemoryEventSink(),
        policy=policy,
    )
    try:
        with TestClient(
            create_app(container), headers={"Authorization": "Bearer dev-key"}
        ) as client:
            yield App(client, container)
    finally:
        container.close()


@pytest.fixture
def app(tmp_path: Path, bundle: ModelBundle) -> Iterator[App]:
    with make_app(tmp_path, bundle) as a:
        yield a


TEN_AM = 10 * 3600.0


def body(**changes: Any) -> dict[str, Any]:
    return {
        "transaction_id": "tx-1",
        "event_time": at(TEN_AM).isoformat(),
        "account_id": "acc-1",
        "card_id": "card-1",
        "merchant_id": "m-1",
        "amount": 42.5,
        "device_id": "dev-1",
        "ip": "10.1.2.3",
        **changes,
    }
