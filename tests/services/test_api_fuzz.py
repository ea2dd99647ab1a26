"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis).

Bounded example counts keep it in CI's budget. Whatever the body, headers or path, the API
answers without a 5xx. Requests carry the development credential so the fuzz reaches the
scoring pipeline, not just the 401 branch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import schemathesis
import torch
from hypothesis import HealthCheck, settings

from feature_stream.event_io import InMemoryEventSink
from feature_stream.features import FEATURE_NAMES
from gnn.artifact import ModelBundle
from gnn.baseline import TreeBaseline
from gnn.model import TemporalHeteroGNN
from services.api.app import create_app
from services.audit import InMemoryAuditSink
from services.container import build_container
from services.settings import DEV_API_KEY, Settings

AUTH = {"Authorization": f"Bearer {DEV_API_KEY}"}


def _app() -> object:
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(100, len(FEATURE_NAMES)))
    bundle = ModelBundle(
        TemporalHeteroGNN(len(FEATURE_NAMES), hidden=8),
        TreeBaseline(max_iter=5).fit(x, (x[:, 0] > 1).astype(int)),
        {"version": "gnn-fuzz-1", "fanouts": [5, 5]},
    )
    tmp = Path(tempfile.mkdtemp(prefix="riskgraph-fuzz-"))
    container = build_container(
        Settings(audit_path=tmp / "audit.log", dead_letter_path=tmp / "dead.jsonl", device="cpu"),
        bundle=bundle,
        audit=InMemoryAuditSink(),
        dead_letters=InMemoryEventSink(),
    )
    return create_app(container)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call(headers=AUTH)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
