"""Replay a stream in event-time order through ingest → features → score → decision policy.

The code is production's: :class:`~feature_stream.ingest.Ingestor` fuses every event,
:class:`~gnn.engine.ScoringEngine` scores (one engine per model version, all over the same
stores), and the decision policy turns each score into an action from the same input the
API builds (:func:`services.scoring.decision_input`).

Order. Events are ingested in event-time order in chunks of ``chunk_s`` of event time; the
payments of a chunk are then scored, each at its own event time. The stores answer only
with what happened strictly before the query time, so a payment scored after its chunk was
ingested sees exactly what it would have seen online (the point-in-time property tests in
``tests/feature_stream/test_point_in_time.py`` prove the stores answer the same whatever
was ingested after ``t``). Chunking is what makes a backtest fast: sampling and the GNN run
on batches instead of one payment at a time.

Labels. A label is visible from its own event time, or ``label_delay_s`` after the payment
it labels if that is later (the label-delay protocol of the fraud-detection literature):
delayed labels wait in a heap and are fused when event time reaches them.

Leakage guard. Every score carries the newest timestamp of anything it used; if one is at or
after the payment's own time the run stops with :class:`LeakageError`.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tqdm import tqdm

from feature_stream.event_io import InMemoryEventSink, RawRecord
from feature_stream.events import LabelEvent, Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import Ingestor
from gnn.artifact import ModelBundle
from gnn.engine import ScoringEngine
from gnn.ladder import Rung
from services.policy import PolicyEvaluator
from services.scoring import decision_input


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
    """One payment of the scored window, with every model's answer."""

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


@dataclass
class BacktestRun:
    """What a replay produced: scored payments in event-time order, label times, counts."""

    models: dict[str, str]  # name → model version
    policy_revision: str
    payments: list[ScoredPayment]
    labels: dict[str, tuple[bool, float]]  # transaction → (is fraud, visible from), last label
    card_of: dict[str, str]  # every payment seen (history too) → its card
    events: int
    dead_letters: int
    seconds: float
    config: BacktestConfig


def run_backtest(
    records: Iterable[RawRecord],
    models: Mapping[str, ModelBundle],
    policy: PolicyEvaluator,
    cfg: BacktestConfig,
    graph: GraphStore | None = None,
    features: FeatureStore | None = None,
    progress: bool = True,
    rungs: Mapping[str, Rung] | None = None,
    total: int | None = None,
) -> BacktestRun:
    """Replay ``records`` (in event-time order) and score ``[cfg.since, cfg.until)`` with every
    model in ``models`` (the first is the champion).

    Stores default to fresh in-memory ones; pass stores that already hold the history to
    replay only what follows it. ``rungs`` picks a ladder rung per model name (default
    ``"full"``: the GNN; ``"tree"`` scores the same artifact's tree baseline). ``total``, the
    number of records if known, gives the progress bar an ETA."""
    if not models:
        raise ValueError("a backtest needs at least one model")
    graph = graph if graph is not None else InMemoryGraphStore()
    features = features if features is not None else InMemoryFeatureStore()
    dead = InMemoryEventSink()
    ingestor = Ingestor(graph, features, dead)
    engines = {
        name: ScoringEngine(b, graph, features, device="cpu", cache_size=0)
        for name, b in models.items()
    }
    delayed: list[tuple[float, int, LabelEvent]] = []  # (visible from, order, label)
    pay_time: dict[str, float] = {}
    card_of: dict[str, str] = {}
    labels: dict[str, tuple[bool, float]] = {}
    window: list[Payment] = []
    out: list[ScoredPayment] = []
    chunk_end = -math.inf
    events = 0
    start = time.perf_counter()
    bar = tqdm(desc="backtest", unit="ev", total=total, disable=not progress, mininterval=0.5)

    def release(until: float, inclusive: bool) -> None:
        while delayed and (delayed[0][0] <= until if inclusive else delayed[0][0] < until):
            ingestor.apply(heapq.heappop(delayed)[2])

    def score_window() -> None:
        release(chunk_end, inclusive=False)
        for i in range(0, len(window), cfg.batch_size):
            batch = window[i : i + cfg.batch_size]
            out.extend(_score(batch, engines, rungs or {}, policy, cfg.tenant))
        window.clear()

    for rec in records:
        bar.update(1)
        event = ingestor.parse(rec)
        if event is None:
            continue
        events += 1
        t = event.event_time.timestamp()
        if t >= cfg.until:
            break
        if t >= chunk_end and window:
            score_window()
        if t >= chunk_end:
            chunk_end = max(t, cfg.since) + cfg.chunk_s
        release(t, inclusive=True)
        if isinstance(event, LabelEvent):
            paid = pay_time.get(event.transaction_id, -math.inf)
            visible = max(t, paid + cfg.label_delay_s)
            labels[event.transaction_id] = (event.is_fraud, visible)
            if visible > t:
                shifted = event.model_copy(update={"event_time": _dt(visible)})
                heapq.heappush(delayed, (visible, events, shifted))
                continue
        ingestor.apply(event)
        if isinstance(event, Payment):
            pay_time[event.event_id] = t
            card_of[event.event_id] = event.card_id
            if t >= cfg.since:
                window.append(event)
    if window:
        score_window()
    bar.close()
    return BacktestRun(
        models={n: b.version for n, b in models.items()},
        policy_revision=policy.revision,
        payments=out,
        labels=labels,
        card_of=card_of,
        events=events,
        dead_letters=len(dead.records),
        seconds=time.perf_counter() - start,
        config=cfg,
    )


def _score(
    batch: list[Payment],
    engines: Mapping[str, ScoringEngine],
    rungs: Mapping[str, Rung],
    policy: PolicyEvaluator,
    tenant: str,
) -> list[ScoredPayment]:
    rows = [
        ScoredPayment(p.event_id, p.event_time.timestamp(), p.account_id, p.card_id,
                      p.merchant_id, p.amount)
        for p in batch
    ]  # fmt: skip
    for name, engine in engines.items():
        t0 = time.perf_counter()
        scored, _ = engine.infer(batch, rungs.get(name, "full"))
        per = (time.perf_counter() - t0) * 1e3 / len(batch)
        for row, p, s in zip(rows, batch, scored, strict=True):
            if s.max_time_used >= row.t:
                raise LeakageError(name, p.event_id, row.t, s.max_time_used)
            decision = policy.decide(decision_input(p, s, tenant, engine.bundle.version))
            row.scores[name] = s.score
            row.actions[name] = decision.action
            row.max_time_used[name] = s.max_time_used
            row.ms_per_payment[name] = per
    return rows


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
