"""Replay a stream in event-time order through ingest → features → score → decision policy.

The code is production's: :class:`~feature_stream.ingest.Ingestor` fuses every event,
:class:`~gnn.engine.ScoringEngine` scores (one engine per model version, all over the same
stores, see :class:`~services.backtest.scorer.Scorer`), and each model's decision policy turns
its score into an action from the same input the API builds
(:func:`services.scoring.decision_input`).

Order. Events are ingested in event-time order in chunks of ``chunk_s`` of event time; the
payments of a chunk are then scored, each at its own event time. The stores answer only
with what happened strictly before the query time, so a payment scored after its chunk was
ingested sees exactly what it would have seen online (the point-in-time property tests in
``tests/feature_stream/test_point_in_time.py`` prove the stores answer the same whatever
was ingested after ``t``). A store that drops old edges to bound its memory, as the
in-memory graph's degree cap does for hubs, is told at each chunk where its queries start
(:meth:`~feature_stream.graph_store.GraphStore.expect_queries_from`), so it keeps what they
read. Chunking is what makes a backtest fast: sampling and the GNN run
on batches instead of one payment at a time.

Labels. A label is visible from its own event time, or ``label_delay_s`` after the payment
it labels if that is later (the label-delay protocol of the fraud-detection literature):
delayed labels wait in a heap and are fused when event time reaches them.

Leakage guard. Every score carries the newest timestamp of anything it used; if one is at or
after the payment's own time the run stops with :class:`LeakageError`.

Options at chunk boundaries: prequential retraining (:mod:`.prequential`; chunks never
straddle a retrain time), checkpoints (:mod:`.checkpoint`); and pacing (:mod:`.pacing`).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from feature_stream.event_io import InMemoryEventSink, RawRecord
from feature_stream.events import LabelEvent, Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import AnyEvent, Ingestor
from gnn.artifact import ModelBundle, load_artifact
from gnn.ladder import Rung
from services.backtest.checkpoint import Checkpoint, CheckpointState
from services.backtest.config import (
    BacktestConfig,
    BacktestRun,
    LeakageError,
    ModelChange,
    ScoredPayment,
)
from services.backtest.pacing import Pacer
from services.backtest.prequential import Retrainer
from services.backtest.scorer import Scorer
from services.policy import PolicyEvaluator

__all__ = ["BacktestConfig", "BacktestRun", "LeakageError", "ScoredPayment", "run_backtest"]


class _Replay:
    """The state of one replay: stores, label heap, pending window, scored rows."""

    def __init__(
        self,
        scorer: Scorer,
        cfg: BacktestConfig,
        retrainer: Retrainer | None,
        on_scored: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_scored = on_scored
        self.scorer = scorer
        self.dead = InMemoryEventSink()
        self.ingestor = Ingestor(scorer.graph, scorer.features, self.dead)
        self.retrainer = retrainer
        self.changes = [ModelChange(n, v, None) for n, v in scorer.versions.items()]
        self.artifacts: dict[str, str] = {}  # name → retrained artifact in use
        self.delayed: list[tuple[float, int, LabelEvent]] = []  # (visible from, order, label)
        self.pay_time: dict[str, float] = {}
        self.card_of: dict[str, str] = {}
        self.labels: dict[str, tuple[bool, float]] = {}
        self.window: list[Payment] = []
        self.rows: list[ScoredPayment] = []
        self.chunk_end = -math.inf
        self.events = 0
        self.first_ts, self.last_ts = math.inf, -math.inf

    def restore(self, state: CheckpointState) -> None:
        self.rows = list(state.rows)
        self.changes = list(state.model_changes)
        self.artifacts = dict(state.artifacts)
        for name, path in self.artifacts.items():
            self.scorer.swap(name, load_artifact(Path(path)))
        if self.retrainer is not None:
            self.retrainer.slots_done = state.retrain_slots_done

    def snapshot(self, position: int, complete: bool = False) -> CheckpointState:
        slots = self.retrainer.slots_done if self.retrainer is not None else 0
        return CheckpointState(
            position, self.rows, self.changes, dict(self.artifacts), slots, complete
        )

    def _apply(self, event: AnyEvent, t: float) -> None:
        self.ingestor.apply(event)
        self.first_ts, self.last_ts = min(self.first_ts, t), max(self.last_ts, t)

    def release(self, until: float, inclusive: bool) -> None:
        """Fuse the delayed labels visible before ``until`` (or at it, if ``inclusive``)."""
        d = self.delayed
        while d and (d[0][0] <= until if inclusive else d[0][0] < until):
            visible, _, label = heapq.heappop(d)
            self._apply(label, visible)

    def ingest(self, event: AnyEvent, t: float, live: bool) -> None:
        """Fuse one event (a label waits for its visibility); queue a payment of the scored
        window for scoring if ``live``."""
        self.release(t, inclusive=True)
        if isinstance(event, LabelEvent):
            paid = self.pay_time.get(event.transaction_id, -math.inf)
            visible = max(t, paid + self.cfg.label_delay_s)
            self.labels[event.transaction_id] = (event.is_fraud, visible)
            if visible > t:
                shifted = event.model_copy(
                    update={"event_time": datetime.fromtimestamp(visible, UTC)}
                )
                heapq.heappush(self.delayed, (visible, self.events, shifted))
                return
        self._apply(event, t)
        if isinstance(event, Payment):
            self.pay_time[event.event_id] = t
            self.card_of[event.event_id] = event.card_id
            if self.retrainer is not None:
                self.retrainer.keep(event)
            if live and t >= self.cfg.since:
                self.window.append(event)

    def score_window(self) -> None:
        self.release(self.chunk_end, inclusive=False)
        size = self.cfg.batch_size
        for i in range(0, len(self.window), size):
            scored = self.scorer.score(self.window[i : i + size])
            self.rows.extend(scored)
            if self.on_scored is not None:
                self.on_scored(len(scored))
        self.window.clear()

    def boundary(self, t: float) -> None:
        """Event ``t`` starts a new chunk: score the last one, retrain if a time is due, and
        set the new chunk's end (never past the next retrain time)."""
        if self.window:
            self.score_window()
        r = self.retrainer
        if r is not None and (at := r.due(t)) is not None:
            self.release(at, inclusive=False)  # labels visible before ``at``, nothing later
            name = r.schedule.model
            bundle, change = r.retrain(
                at, self.scorer.versions[name], self.scorer.graph, self.scorer.features,
                self.ingestor.stats, self.dead, self.first_ts, self.last_ts,
            )  # fmt: skip
            self.changes.append(change)
            if bundle is not None:
                self.scorer.swap(name, bundle)
                self.artifacts[name] = str(change.artifact)
        # The chunk is ingested before its payments are scored: the stores keep what a query
        # at its start or later reads (nothing before ``since`` is scored).
        self.scorer.graph.expect_queries_from(max(t, self.cfg.since))
        end = max(t, self.cfg.since) + self.cfg.chunk_s
        self.chunk_end = min(end, r.next_time) if r is not None else end


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
    *,
    policies: Mapping[str, PolicyEvaluator] | None = None,
    speed: float | None = None,
    retrainer: Retrainer | None = None,
    checkpoint: Checkpoint | None = None,
    source: str = "",
    on_record: Callable[[int], None] | None = None,
    on_scored: Callable[[int], None] | None = None,
) -> BacktestRun:
    """Replay ``records`` (in event-time order) and score ``[cfg.since, cfg.until)`` with every
    model in ``models`` (the first is the champion).

    Stores default to fresh in-memory ones; pass stores that already hold the history to
    replay only what follows it. ``rungs`` picks a ladder rung per model name (default
    ``"full"``: the GNN; ``"tree"`` scores the same artifact's tree baseline). ``total``, the
    number of records if known, gives the progress bar an ETA.

    ``policies`` gives a model name its own decision policy (default: ``policy``). ``speed``
    paces the scored window at that many times real time (``None``: as fast as possible).
    ``retrainer`` retrains one model on its schedule. ``checkpoint`` saves state at chunk
    boundaries and, if it says so, resumes from it; ``source`` names the records in the
    checkpoint's fingerprint. ``on_record(i)`` is called before source record ``i`` (0-based)
    is processed, ``on_scored(n)`` after each batch of ``n`` payments is scored."""
    graph = graph if graph is not None else InMemoryGraphStore()
    features = features if features is not None else InMemoryFeatureStore()
    scorer = Scorer(models, graph, features, policy, policies, rungs, cfg.tenant)
    replay = _Replay(scorer, cfg, retrainer, on_scored)
    resume_at = last_saved = 0
    if checkpoint is not None:
        fingerprint = {
            "config": dataclasses.asdict(cfg),
            "models": scorer.versions,
            "policies": {n: p.revision for n, p in scorer.policies.items()},
            "rungs": {n: scorer.rungs.get(n, "full") for n in models},
            "retrain": repr(retrainer.schedule) if retrainer is not None else None,
            "source": source,
        }
        state = checkpoint.start(fingerprint)
        if state is not None:
            replay.restore(state)
            resume_at = last_saved = state.position
    pacer = Pacer(speed) if speed is not None else None
    consumed = 0
    start = time.perf_counter()
    bar = tqdm(desc="backtest", unit="ev", total=total, disable=not progress, mininterval=0.5)
    for i, rec in enumerate(records):
        if on_record is not None:
            on_record(i)
        bar.update(1)
        event = replay.ingestor.parse(rec)
        if event is not None:
            replay.events += 1
            t = event.event_time.timestamp()
            if t >= cfg.until:
                break
            live = i >= resume_at
            if live and pacer is not None and t >= cfg.since:
                pacer.wait(t)
            if live and t >= replay.chunk_end:
                replay.boundary(t)
                if checkpoint is not None and i - last_saved >= checkpoint.every:
                    checkpoint.save(replay.snapshot(i))
                    last_saved = i
            replay.ingest(event, t, live)
        consumed = i + 1
    if replay.window:
        replay.score_window()
    bar.close()
    if checkpoint is not None:
        checkpoint.save(replay.snapshot(max(consumed, resume_at), complete=True))
    return BacktestRun(
        models={n: b.version for n, b in models.items()},
        policy_revision=scorer.policies[next(iter(models))].revision,
        payments=replay.rows,
        labels=replay.labels,
        card_of=replay.card_of,
        events=replay.events,
        dead_letters=len(replay.dead.records),
        seconds=time.perf_counter() - start,
        config=cfg,
        policy_revisions={n: p.revision for n, p in scorer.policies.items()},
        model_changes=replay.changes,
        dead=list(replay.dead.records),
    )
