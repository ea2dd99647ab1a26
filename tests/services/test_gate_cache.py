"""Gate answers are reused for the same input within the TTL, never across inputs, never
after it, and failures are never kept (the gate stays fail-closed)."""

from __future__ import annotations

from typing import Any

import pytest

from services.gate_cache import GateCache
from services.policy import GateResult, PolicyUnavailable
from services.policy_opa import OpaServerPolicy, WasmPolicy


class CountedWasm(WasmPolicy):
    """The packaged Wasm policy, counting its gate evaluations."""

    calls = 0

    def _gate(self, request: dict[str, Any]) -> GateResult:
        self.calls += 1
        return super()._gate(request)


def gate_input(tenant: str = "default", region: str = "local") -> dict[str, Any]:
    return {
        "client": {
            "id": "checkout",
            "tenant": "default",
            "roles": ["scorer"],
            "rate_tier": "standard",
        },
        "request": {
            "tenant": tenant,
            "purpose": "payment_authorisation",
            "region": region,
            "model_version": "gnn-v1",
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_same_input_is_evaluated_once_within_the_ttl() -> None:
    policy, clock = CountedWasm(), Clock()
    gates = GateCache(policy, ttl_s=1.0, clock=clock)
    first = gates.gate(gate_input())
    clock.now += 0.5
    assert gates.gate(gate_input()) == first == policy.gate(gate_input())
    assert (policy.calls, gates.hits, gates.evaluations) == (2, 1, 1)  # 2: one direct call above
    clock.now += 0.6  # past the TTL since the evaluation
    gates.gate(gate_input())
    assert (gates.hits, gates.evaluations) == (1, 2)


def test_other_inputs_get_their_own_answers() -> None:
    policy = CountedWasm()
    gates = GateCache(policy, ttl_s=60.0)
    allowed = gates.gate(gate_input())
    denied = gates.gate(gate_input(tenant="globex"))  # another tenant's data: not this client's
    assert allowed.allow and not denied.allow
    assert denied == policy.gate(gate_input(tenant="globex"))
    assert gates.evaluations == 2 and gates.hits == 0


def test_a_ttl_of_zero_evaluates_every_time() -> None:
    policy = CountedWasm()
    gates = GateCache(policy, ttl_s=0.0)
    for _ in range(3):
        gates.gate(gate_input())
    assert policy.calls == 3 and gates.hits == 0


def test_the_oldest_input_goes_first_when_full() -> None:
    policy = CountedWasm()
    gates = GateCache(policy, ttl_s=60.0, max_entries=2)
    for region in ("a", "b", "c"):
        gates.gate(gate_input(region=region))
    gates.gate(gate_input(region="c"))
    gates.gate(gate_input(region="a"))  # evicted by "c": evaluated again
    assert (gates.hits, gates.evaluations) == (1, 4)


def test_failures_are_not_kept() -> None:
    gates = GateCache(OpaServerPolicy("http://127.0.0.1:9", timeout_s=0.2), ttl_s=60.0)
    for _ in range(2):
        with pytest.raises(PolicyUnavailable):
            gates.gate(gate_input())
    assert gates.evaluations == 0 and gates.hits == 0
