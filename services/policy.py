"""The policy port: a gate before inference and a decision after it.

The embedded first version evaluates the same rules as ``policies/`` in Python; the governance
work swaps in OPA (Wasm in-process, or an OPA server) behind this same port. Whatever the
implementation, an evaluation error raises :class:`PolicyUnavailable` and the caller fails
closed: nothing is scored.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["approve", "review", "decline"]
_SEVERITY: dict[str, int] = {"approve": 0, "review": 1, "decline": 2}


class PolicyUnavailable(RuntimeError):
    """The policy could not be evaluated; the request must not be scored."""


@dataclass(frozen=True)
class GateResult:
    allow: bool
    reasons: list[str]
    revision: str


@dataclass(frozen=True)
class DecisionResult:
    action: Action
    reasons: list[str]
    revision: str
    shadow: list[str] = field(default_factory=list)


class PolicyEvaluator(abc.ABC):
    """Port for policy evaluation."""

    revision: str = "unknown"

    def gate(self, request: dict[str, Any]) -> GateResult:
        try:
            return self._gate(request)
        except PolicyUnavailable:
            raise
        except Exception as exc:  # any evaluation failure closes the gate
            raise PolicyUnavailable(f"gate policy failed: {exc}") from exc

    def decide(self, request: dict[str, Any]) -> DecisionResult:
        try:
            return self._decide(request)
        except PolicyUnavailable:
            raise
        except Exception as exc:
            raise PolicyUnavailable(f"decision policy failed: {exc}") from exc

    @abc.abstractmethod
    def _gate(self, request: dict[str, Any]) -> GateResult: ...
    @abc.abstractmethod
    def _decide(self, request: dict[str, Any]) -> DecisionResult: ...


class BuiltinPolicy(PolicyEvaluator):
    """In-process rules: thresholds, the device-farm hard rule and a kill switch."""

    revision = "builtin-1"

    def __init__(
        self,
        review_threshold: float = 0.5,
        decline_threshold: float = 0.9,
        device_farm_accounts: int = 3,
        kill_switch: bool = False,
    ) -> None:
        self.review_threshold = review_threshold
        self.decline_threshold = decline_threshold
        self.device_farm_accounts = device_farm_accounts
        self.kill_switch = kill_switch

    def _gate(self, request: dict[str, Any]) -> GateResult:
        if self.kill_switch:
            return GateResult(False, ["kill_switch"], self.revision)
        return GateResult(True, [], self.revision)

    def _decide(self, request: dict[str, Any]) -> DecisionResult:
        score = request["score"]
        if not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
            raise PolicyUnavailable(f"score {score!r} is not a number in [0, 1]")
        reasons: list[tuple[Action, str]] = []
        if score >= self.decline_threshold:
            reasons.append(("decline", "score_decline"))
        elif score >= self.review_threshold:
            reasons.append(("review", "score_review"))
        shared = request.get("features", {}).get("device_distinct_accounts_5m", 0)
        if shared >= self.device_farm_accounts:
            reasons.append(("review", "device_farm"))
        action: Action = "approve"
        for a, _ in reasons:
            if _SEVERITY[a] > _SEVERITY[action]:
                action = a
        return DecisionResult(action, [r for _, r in reasons], self.revision)
