"""Request and response bodies of the scoring API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from feature_stream.events import Id


class ScoreRequest(BaseModel):
    """A payment to score. ``event_time`` defaults to now if omitted. The tenant is the
    caller's, from its credential."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Id
    event_time: AwareDatetime | None = None
    account_id: Id
    card_id: Id
    merchant_id: Id
    amount: float = Field(gt=0, le=1_000_000, strict=True)  # a number, not "12" or true
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    channel: Literal["card_present", "ecommerce", "p2p"] = "ecommerce"
    device_id: Id | None = None
    ip: str | None = None
    deadline_ms: float | None = Field(None, gt=0, description="Time budget for this request")


class StageLatency(BaseModel):
    model_config = ConfigDict(extra="allow")


class ScoreResponse(BaseModel):
    transaction_id: str
    score: float = Field(ge=0, le=1)
    action: Literal["approve", "review", "decline"]
    reasons: list[str]
    model_version: str
    served_by: Literal["gnn", "baseline", "policy"]
    rung: Literal["full", "reduced", "cached", "tree", "policy"] = Field(
        description="Rung of the degradation ladder that served: full GNN, reduced fan-out, "
        "cached neighbour embeddings, tree model, or policy rules alone"
    )
    policy_revision: str
    latency_ms: dict[str, float]
    receipt: dict[str, Any]
    shadow_scores: dict[str, float] | None = None
    shadow_rules: list[str] = []
    degraded: list[str] = Field(
        default_factory=list,
        description="What this answer had to do without: features_unavailable (scored "
        "without online features), features_not_recorded (its features wait in dead letters), "
        "case_not_recorded (flagged, but its review case could not be stored)",
    )
    similar_cases: dict[str, int] | None = Field(
        None,
        description="For a flagged payment: how the most similar resolved cases ended "
        '(e.g. {"fraud": 7, "legit": 3}); null before any verdict or without a GNN embedding',
    )


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]


class ErrorResponse(BaseModel):
    detail: str


class VerdictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["fraud", "legit", "escalate"]
    note: str = Field("", max_length=2000)
