"""What a backtest is asked to do and what it produces: plain data, no behaviour.

:class:`BacktestConfig` says what to score; :class:`ScoredPayment` is one scored payment with
every model's answer; :class:`ModelChange` records when a model version took over (the initial
versions and each prequential retraining); :class:`BacktestRun` is the whole replay's result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class LeakageError(RuntimeError):
    """A score used something at or after the payment's own time."""

    def __init__(self, model: str, transaction_id: str, event_time: float, used: float) -> None:
        super().__init__(
            f"leakage: model {model!r} scored {transaction_id} (event time {event_time:.3f}) "
            f"with an input from {used:.3f}, {used - event_time:+.3f} s from it"
        )
        self.model = model
        self.transaction_id = transaction_id
        self.event_time = event_time
        self.used = used

    def __reduce__(self) -> tuple[type[LeakageError], tuple[str, str, float, float]]:
        # Picklable with its fields: a backtest worker process hands it to its parent.
        return type(self), (self.model, self.transaction_id, self.event_time, self.used)


@dataclass(frozen=True)
class BacktestConfig:
    """What to score and how.

    Args:
        since, until: score payments with ``since <= event time < until`` (epoch seconds);
            everything before ``since`` is replayed as history.
        label_delay_s: a label becomes visible no earlier than this long after its payment.
        chunk_s: seconds of event time ingested before the payments in them are scored.
        batch_size: payments per engine call.
        tenant: the tenant the decision policy decides for.
    """

    since: float
    until: float = math.inf
    label_delay_s: float = 0.0
    chunk_s: float = 3600.0
    batch_size: int = 512
    tenant: str = "default"


@dataclass
class ScoredPayment:
    """One payment of the scored window, with every model's answer (keyed by model name)."""

    transaction_id: str
    t: float
    account: str
    card: str
    merchant: str
    amount: float
    scores: dict[str, float] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    max_time_used: dict[str, float] = field(default_factory=dict)
    ms_per_payment: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelChange:
    """A model version taking over a model name at event time ``since`` (``None``: from the
    start of the replay). A failed retraining is recorded with ``error`` set and the version
    that stays in place."""

    model: str
    version: str
    since: float | None
    artifact: str | None = None
    trained_on: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class BacktestRun:
    """What a replay produced: scored payments in event-time order, label times, counts."""

    models: dict[str, str]  # name → initial model version
    policy_revision: str  # the champion's decision policy
    payments: list[ScoredPayment]
    labels: dict[str, tuple[bool, float]]  # transaction → (is fraud, visible from), last label
    card_of: dict[str, str]  # every payment seen (history too) → its card
    events: int
    dead_letters: int
    seconds: float
    config: BacktestConfig
    policy_revisions: dict[str, str] = field(default_factory=dict)  # name → its policy
    model_changes: list[ModelChange] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)  # the dead letters themselves
