"""The policy port: a gate before inference and a decision after it.

The review policy governs analyst actions. Implementations (``services/policy_opa.py``)
evaluate the Rego under ``policies/``: compiled to
Wasm in-process by default, or on an OPA server. Whatever the implementation, an evaluation
error raises :class:`PolicyUnavailable` and the caller fails closed: nothing is scored.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["approve", "review", "decline"]


class PolicyUnavailable(RuntimeError):
    """The policy could not be evaluated; the request must not be scored."""


@dataclass(frozen=True)
class GateResult:
    allow: bool
    reasons: list[str]
    revision: str


@dataclass(frozen=True)
class ReviewResult:
    """May this analyst do this to this case; and may they see it unmasked."""

    allow: bool
    reasons: list[str]
    unmask_pii: bool
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

    def review(self, request: dict[str, Any]) -> ReviewResult:
        try:
            return self._review(request)
        except PolicyUnavailable:
            raise
        except Exception as exc:
            raise PolicyUnavailable(f"review policy failed: {exc}") from exc

    def close(self) -> None:  # noqa: B027 - in-process evaluators hold nothing
        """Release connections."""

    @abc.abstractmethod
    def _gate(self, request: dict[str, Any]) -> GateResult: ...
    @abc.abstractmethod
    def _decide(self, request: dict[str, Any]) -> DecisionResult: ...
    @abc.abstractmethod
    def _review(self, request: dict[str, Any]) -> ReviewResult: ...
