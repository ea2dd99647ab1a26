"""The compiled Wasm policy and the OPA server return identical decisions.

Needs the OPA server started by ``deploy/services.sh up opa`` (``make test`` does it); it is
never skipped: an unreachable server fails the run.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from services.policy import PolicyUnavailable
from services.policy_opa import OpaServerPolicy, WasmPolicy, source_revision

pytestmark = pytest.mark.integration

OPA_URL = os.environ.get("RISKGRAPH_OPA_URL", "http://127.0.0.1:8181")
TENANTS = ["default", "acme", "globex", "nobody"]


def _pick(rng: random.Random, xs: list[Any]) -> Any:
    return xs[rng.randrange(len(xs))]


def gate_input(rng: random.Random) -> dict[str, Any]:
    client = {
        "id": _pick(rng, ["dev-client", "checkout", "svc-platform-backtest"]),
        "tenant": _pick(rng, TENANTS),
        "roles": ["scorer"],
        "rate_tier": _pick(rng, ["standard", "premium", "gold"]),
    }
    request = {
        "tenant": _pick(rng, TENANTS),
        "purpose": _pick(rng, ["payment_authorisation", "backtest", "marketing"]),
        "region": _pick(rng, ["local", "eu-west-1", "us-east-1", "mars"]),
        "model_version": _pick(rng, ["gnn-v1", "gnn-20260301-ab", "fallback-v1", "x"]),
    }
    if rng.random() < 0.05:
        del request[_pick(rng, list(request))]
    return {"client": client, "request": request}


def decision_input(rng: random.Random) -> dict[str, Any]:
    score: Any = rng.random() if rng.random() > 0.03 else _pick(rng, ["high", None, 1.5])
    return {
        "tenant": _pick(rng, TENANTS),
        "score": score,
        "amount": round(rng.lognormvariate(4, 1.5), 2),
        "currency": _pick(rng, ["EUR", "USD", "GBP", "XXX"]),
        "features": {"device_distinct_accounts_5m": rng.randint(0, 5)},
        "entities": {
            "account_id": f"acc-{rng.randint(0, 3)}",
            "card_id": f"card-{rng.randint(0, 3)}",
            "merchant_id": f"mer-{rng.randint(0, 3)}",
            "device_id": f"dev-{rng.randint(0, 3)}",
            "ip": f"10.0.0.{rng.randint(0, 3)}",
        },
        "model": {"version": "gnn-1", "served_by": _pick(rng, ["gnn", "baseline"])},
    }


def review_input(rng: random.Random) -> dict[str, Any]:
    return {
        "user": {
            "id": _pick(rng, ["alice", "bob"]),
            "tenant": _pick(rng, TENANTS),
            "roles": rng.sample(
                ["analyst", "senior_analyst", "auditor", "admin"], rng.randint(0, 2)
            ),
        },
        "action": _pick(rng, ["view_case", "view_pii", "label", "override", "bulk_label", "x"]),
        "case": {"tenant": _pick(rng, TENANTS), "assignee": _pick(rng, ["alice", "bob"])},
    }


@pytest.fixture(scope="module")
def server() -> OpaServerPolicy:
    policy = OpaServerPolicy(OPA_URL)
    try:
        policy.evaluate("gate", gate_input(random.Random(0)))
    except PolicyUnavailable as exc:
        pytest.fail(
            f"OPA server not reachable at {OPA_URL}: start it with "
            f"`deploy/services.sh up opa` ({exc})"
        )
    return policy


def test_wasm_and_server_agree_on_generated_inputs(server: OpaServerPolicy) -> None:
    wasm = WasmPolicy()
    rng = random.Random(2026)
    makers = {"gate": gate_input, "decision": decision_input, "review": review_input}
    compared = 0
    actions: set[str] = set()
    for i in range(1200):
        kind = ("gate", "decision", "review")[i % 3]
        x = makers[kind](rng)
        w, s = wasm.evaluate(kind, x), server.evaluate(kind, x)
        assert w == s, (kind, x, w, s)
        if kind == "decision":
            actions.add(w["action"])
        compared += 1
    assert compared >= 1000
    assert actions == {"approve", "review", "decline"}  # the inputs reach every outcome


def test_both_paths_report_the_same_bundle_revision(server: OpaServerPolicy) -> None:
    assert WasmPolicy().revision == server.revision == source_revision()


def test_an_unreachable_server_fails_closed() -> None:
    dead = OpaServerPolicy("http://127.0.0.1:9", timeout_s=0.2)
    with pytest.raises(PolicyUnavailable):
        dead.gate(gate_input(random.Random(1)))
