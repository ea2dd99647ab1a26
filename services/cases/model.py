"""A review case: one flagged payment, what the scorer said about it and what the analyst did.

A case is opened when the decision policy answers ``review`` or ``decline``; its id is derived
from the transaction id (:func:`case_id_for`), so opening the same payment twice is one case.
Cases are immutable values: the stores hand back a new :class:`Case` after each change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np

Action = Literal["review", "decline"]
CaseStatus = Literal["open", "fraud", "legit", "escalated"]
Verdict = Literal["fraud", "legit", "escalate"]

ACTIONS: tuple[Action, ...] = get_args(Action)
STATUSES: tuple[CaseStatus, ...] = get_args(CaseStatus)
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

VERDICT_STATUS: dict[Verdict, CaseStatus] = {
    "fraud": "fraud",
    "legit": "legit",
    "escalate": "escalated",
}
"""The status a verdict moves a case to."""

REVIEWABLE: frozenset[CaseStatus] = frozenset({"open", "escalated"})
"""Statuses still waiting for an analyst: an escalation hands the case on, it does not close it."""
RESOLVED: frozenset[CaseStatus] = frozenset({"fraud", "legit"})
"""Statuses that settle a case; only these become precedents for similar-case retrieval."""

ENTITY_KINDS: dict[str, str] = {
    "account_id": "account",
    "card_id": "card",
    "merchant_id": "merchant",
    "device_id": "device",
    "ip": "ip",
}
"""Key of :attr:`Case.entities` → the entity kind it names (the kinds ``sharing`` reports)."""
REQUIRED_ENTITIES: tuple[str, ...] = ("account_id", "card_id", "merchant_id")

SortKey = Literal["score", "amount", "age"]
SORT_KEYS: tuple[SortKey, ...] = get_args(SortKey)


def case_id_for(transaction_id: str) -> str:
    """The id of the case opened for a payment: one payment, one case."""
    return f"case-{transaction_id}"


def _finite(name: str, v: float) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return f


def _one_of(name: str, v: object, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {v!r}")


@dataclass(frozen=True, slots=True)
class Case:
    """One flagged payment under review.

    Times are POSIX seconds (UTC). ``created_at`` is the payment's event time, not the time the
    case was written, so queue ages and backtests agree. ``entities`` keeps only the keys of
    :data:`ENTITY_KINDS` that have a value (``device_id`` and ``ip`` are optional), in that
    order. ``embedding`` is the GNN case embedding, stored as float32: values are rounded to
    float32 here so every store gives back exactly what it was given. ``scenario`` is the fraud
    pattern of synthetic data (benchmarks only; ``None`` for real traffic).

    Raises ``ValueError`` on a field outside its domain, so a malformed case never reaches a
    store.
    """

    case_id: str
    transaction_id: str
    tenant: str
    created_at: float
    score: float
    action: Action
    reasons: list[str]
    served_by: str
    model_version: str
    amount: float
    currency: str
    entities: dict[str, str]
    status: CaseStatus = "open"
    assignee: str | None = None
    verdict_by: str | None = None
    verdict_note: str | None = None
    verdict_at: float | None = None
    scenario: str | None = None
    embedding: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        for name in ("case_id", "transaction_id", "tenant", "served_by", "model_version"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string")
        if self.case_id != case_id_for(self.transaction_id):
            raise ValueError(
                f"case_id must be {case_id_for(self.transaction_id)!r} for transaction "
                f"{self.transaction_id!r}, got {self.case_id!r}"
            )
        put(self, "created_at", _finite("created_at", self.created_at))
        score = _finite("score", self.score)
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {score}")
        put(self, "score", score)
        amount = _finite("amount", self.amount)
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")
        put(self, "amount", amount)
        _one_of("action", self.action, ACTIONS)
        _one_of("status", self.status, STATUSES)
        if not all(isinstance(r, str) and r for r in self.reasons):
            raise ValueError("reasons must be non-empty strings")
        put(self, "reasons", list(self.reasons))
        put(self, "entities", normalise_entities(self.entities, require=True))
        if self.verdict_at is not None:
            put(self, "verdict_at", _finite("verdict_at", self.verdict_at))
        if self.embedding is not None:
            vec = np.asarray(self.embedding, dtype=np.float32)
            if vec.ndim != 1 or vec.size == 0 or not np.isfinite(vec).all():
                raise ValueError("embedding must be a non-empty 1-D sequence of finite numbers")
            put(self, "embedding", tuple(vec.tolist()))

    @property
    def reviewable(self) -> bool:
        """Still waiting for an analyst (open or escalated)."""
        return self.status in REVIEWABLE

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (the embedding as a list, or ``None``)."""
        out = asdict(self)
        out["embedding"] = None if self.embedding is None else list(self.embedding)
        return out


def normalise_entities(entities: Mapping[str, str | None], *, require: bool) -> dict[str, str]:
    """``entities`` with ``None`` values dropped, in :data:`ENTITY_KINDS` order.

    Raises ``ValueError`` on an unknown key or an empty value, and, with ``require``, when an
    entity every payment has (account, card, merchant) is missing.
    """
    unknown = sorted(set(entities) - set(ENTITY_KINDS))
    if unknown:
        raise ValueError(f"unknown entity keys {unknown}; valid keys are {list(ENTITY_KINDS)}")
    out: dict[str, str] = {}
    for key in ENTITY_KINDS:
        v = entities.get(key)
        if v is None:
            continue
        if not isinstance(v, str) or not v:
            raise ValueError(f"entity {key} must be a non-empty string, got {v!r}")
        out[key] = v
    if require:
        missing = [k for k in REQUIRED_ENTITIES if k not in out]
        if missing:
            raise ValueError(f"entities is missing {missing}")
    return out
