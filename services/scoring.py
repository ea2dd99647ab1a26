"""The scoring pipeline behind ``POST /v1/score``, micro-batched under a deadline.

Per request: idempotency check → gate policy → a rung of the degradation ladder chosen from
the remaining budget (:mod:`gnn.ladder`) → point-in-time features and neighbourhood → model →
decision policy → ingest → audit record → answer. The payment is fused into the graph after
it is scored, so its own score never sees it.

Threading: callers (the API's event loop) :meth:`ScoringService.submit` and get a future; one
inference worker thread (:class:`gnn.batching.MicroBatcher`) takes micro-batches off a
bounded queue and runs the whole pipeline for a batch while holding :attr:`lock`, the
single-writer lock of the embedded stores (``/v1/events`` takes it too). Within a batch,
requests are grouped by rung and each group is one batched engine call; groups run cheapest
first and each request is answered as soon as its own audit record is written, so a
request pushed down the ladder by a tight deadline does not wait for the GNN group.

Requests in the same micro-batch (arrived within ``τ`` of each other) are scored against the
graph as it was before any of them was ingested, except that cheaper-rung groups are ingested
before the GNN groups sample: the event-time filter of the sampler still keeps every input
strictly before each payment's own time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from feature_stream.events import Payment
from feature_stream.feature_store import FeatureStoreUnavailable
from feature_stream.ingest import Ingestor
from gnn.batching import BatchInfo, MicroBatcher, QueueFull
from gnn.engine import Scored, ScoringEngine
from gnn.ladder import LADDER, Rung, StageCosts, choose_rung
from services.audit import AuditSink
from services.auth import Principal
from services.gate_cache import GateCache
from services.idempotency import IdempotencyCache, IdempotencyConflict
from services.policy import GateResult, PolicyEvaluator, PolicyUnavailable

if TYPE_CHECKING:
    from services.cases.review import ReviewService

log = logging.getLogger("riskgraph.scoring")


@dataclass
class ScoreOutcome:
    payment: Payment
    score: float
    action: str
    reasons: list[str]
    served_by: str
    model_version: str
    policy_revision: str
    latency_ms: dict[str, float]
    receipt: dict[str, Any]
    shadow_scores: dict[str, float] | None
    shadow_rules: list[str]
    replayed: bool = False
    rung: str = "full"
    batch_size: int = 1
    degraded: list[str] = field(default_factory=list)
    similar_cases: dict[str, int] | None = None
    # ``time.perf_counter()`` when the worker handed the outcome back: the API measures how
    # long the answer then waited for its event loop (the ``handoff`` stage).
    answered_at: float = 0.0


class GateDenied(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class Overloaded(Exception):
    """The request was shed before any work was done: the queue is full, or the expected
    queue wait alone would spend its deadline. ``retry_after_s`` is a hint for the caller."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass
class ScoreJob:
    """One queued request. ``started_at`` is ``time.perf_counter()`` seconds when the server
    received it; its deadline is ``started_at + deadline_ms / 1000``."""

    payment: Payment
    principal: Principal
    payload: dict[str, Any]
    key: str
    body_hash: str
    started_at: float
    deadline_ms: float
    lat: dict[str, float] = field(default_factory=dict)

    @property
    def deadline_at(self) -> float:
        return self.started_at + self.deadline_ms / 1e3


Resolve = Callable[[int, "ScoreOutcome | Exception"], None]
Infer = Callable[[Sequence[Payment], Rung], tuple[list[Scored], dict[str, float]]]


class ScoringService:
    """Scores payments through one inference worker over the embedded stores.

    Args:
        batch_max_size: micro-batch flush size ``B``.
        batch_max_wait_ms: micro-batch flush time ``τ`` (ms) after the oldest queued request.
        queue_capacity: most requests waiting; more are shed with :class:`Overloaded`.
        deadline_margin_ms: budget kept back from each request for answering over HTTP.
        rungs: rungs of :data:`gnn.ladder.LADDER` this service may use, in ladder order
            (``"policy"`` is always the floor).
        shed_on_deadline: also shed a request at the door when the expected queue wait
            exceeds its deadline (answering it late would break the SLA anyway).
        gate_ttl_s: how long a gate answer is reused for the same caller and context
            (:class:`~services.gate_cache.GateCache`; 0: every request evaluates the gate).
        infer: what scores a batch on a rung (default ``engine.infer``; the API passes
            :meth:`gnn.engine_process.EngineProcess.infer` to score in another process).
    """

    def __init__(
        self,
        engine: ScoringEngine,
        ingestor: Ingestor,
        policy: PolicyEvaluator,
        audit: AuditSink,
        audit_secret: str,
        shadow_baseline: bool = False,
        region: str = "local",
        idempotency: IdempotencyCache | None = None,
        batch_max_size: int = 32,
        batch_max_wait_ms: float = 0.0,
        queue_capacity: int = 256,
        deadline_margin_ms: float = 1.0,
        rungs: Sequence[Rung] = LADDER,
        shed_on_deadline: bool = True,
        gate_ttl_s: float = 1.0,
        infer: Infer | None = None,
    ) -> None:
        self.engine = engine
        self.infer: Infer = infer if infer is not None else engine.infer
        self.ingestor = ingestor
        self.policy = policy
        self.gates = GateCache(policy, ttl_s=gate_ttl_s)
        self.audit = audit
        self.audit_key = audit_secret.encode()
        self.shadow_baseline = shadow_baseline
        self.region = region
        self.idempotency = idempotency if idempotency is not None else IdempotencyCache()
        self.lock = threading.Lock()
        self.costs = StageCosts()
        self.margin_ms = deadline_margin_ms
        self.rungs: tuple[Rung, ...] = tuple(
            r for r in LADDER if r in rungs and (r != "cached" or engine.cache is not None)
        )
        self.shed_on_deadline = shed_on_deadline
        self.on_batch: Callable[[int], None] | None = None  # e.g. a batch-size histogram
        self.cases: ReviewService | None = None  # set when analyst review is wired
        self.batcher: MicroBatcher[ScoreJob, ScoreOutcome] = MicroBatcher(
            self._process, batch_max_size, batch_max_wait_ms, queue_capacity
        )

    def input_hash(self, payload: dict[str, Any]) -> str:
        """Keyed hash of the payment in a request: the audit log proves what was scored without
        holding PII. The deadline is left out: a retry with less time left is the same request."""
        payment = {k: v for k, v in payload.items() if k != "deadline_ms"}
        body = json.dumps(payment, sort_keys=True, default=str).encode()
        return hmac.new(self.audit_key, body, hashlib.sha256).hexdigest()

    # -- callers -------------------------------------------------------------------------------
    def submit(
        self,
        payment: Payment,
        principal: Principal,
        deadline_ms: float,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
        started_at: float | None = None,
    ) -> Future[ScoreOutcome]:
        """Queue one payment for ``principal``; the outcome (or error) arrives on the future.

        ``deadline_ms`` counts from ``started_at`` (``time.perf_counter()`` seconds; default
        now). A repeated ``idempotency_key`` (default: the transaction id) from the same
        caller gets the first outcome without scoring or ingesting again; the same key with
        another body fails with :class:`~services.idempotency.IdempotencyConflict`. Other
        errors on the future: :class:`GateDenied`, :class:`PolicyUnavailable`.

        Raises :class:`Overloaded` (nothing queued, nothing audited) when the queue is full or,
        with ``shed_on_deadline``, when the expected queue wait exceeds ``deadline_ms``.
        """
        t0 = time.perf_counter() if started_at is None else started_at
        job = ScoreJob(
            payment,
            principal,
            payload,
            idempotency_key or payment.event_id,
            self.input_hash(payload),
            t0,
            deadline_ms,
        )
        wait_ms = self.batcher.expected_wait_s() * 1e3
        if self.shed_on_deadline and wait_ms > deadline_ms:
            raise Overloaded(
                f"expected queue wait {wait_ms:.1f} ms exceeds the {deadline_ms:g} ms deadline",
                wait_ms / 1e3,
            )
        try:
            # Never spend more than half the budget waiting for the batch to fill.
            return self.batcher.submit(job, flush_by=t0 + deadline_ms / 2e3)
        except QueueFull as exc:
            raise Overloaded(str(exc), exc.retry_after_s) from None

    def score(
        self,
        payment: Payment,
        principal: Principal,
        deadline_ms: float,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> ScoreOutcome:
        """Blocking :meth:`submit` (same arguments, same errors, raised here)."""
        return self.submit(payment, principal, deadline_ms, payload, idempotency_key).result()

    def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        self.batcher.close()

    # -- the inference worker ------------------------------------------------------------------
    def _process(self, jobs: Sequence[ScoreJob], info: BatchInfo, resolve: Resolve) -> None:
        if self.on_batch is not None:
            self.on_batch(len(jobs))
        t_lock = time.perf_counter()
        with self.lock:
            lock_wait_ms = (time.perf_counter() - t_lock) * 1e3
            for i, job in enumerate(jobs):
                job.lat["queue"] = info.queue_wait_ms[i] + lock_wait_ms
            todo = list(range(len(jobs)))
            while todo:
                # A key (or transaction id) repeated within one batch waits for the first to
                # finish, then replays (or is checked against what the first bound).
                todo = self._run(jobs, todo, len(jobs), resolve)

    def _run(
        self, jobs: Sequence[ScoreJob], todo: list[int], batch_size: int, resolve: Resolve
    ) -> list[int]:
        """Score ``jobs[i]`` for ``i`` in ``todo``; returns the indices deferred as repeats."""
        live: list[tuple[int, GateResult]] = []
        keys: set[tuple[str, str]] = set()
        txs: set[tuple[str, str]] = set()
        deferred: list[int] = []
        for i in todo:
            job = jobs[i]
            k = (job.principal.id, job.key)
            t = (job.principal.id, job.payment.event_id)
            if k in keys or t in txs:  # waits for the first with its key or transaction id
                deferred.append(i)
                continue
            keys.add(k)
            txs.add(t)
            try:
                cached = self.idempotency.get(k[0], k[1], job.body_hash)
                if cached is None:  # one transaction id names one payment, whatever the key
                    self.idempotency.check_transaction(t[0], t[1], job.body_hash)
            except IdempotencyConflict as exc:
                resolve(i, exc)
                continue
            if cached is not None:
                resolve(i, ScoreOutcome(**{**cached, "replayed": True}))
                continue
            t0 = time.perf_counter()
            try:
                gate = self.gates.gate(self._gate_input(job.principal))
            except PolicyUnavailable as exc:
                resolve(i, exc)
                continue
            finally:
                job.lat["gate_policy"] = (time.perf_counter() - t0) * 1e3
            if not gate.allow:
                self._audit_denied(job, gate.reasons, gate.revision)
                resolve(i, GateDenied(gate.reasons))
                continue
            live.append((i, gate))

        estimates = self.costs.estimates(len(live))
        groups: dict[Rung, list[tuple[int, GateResult]]] = {}
        now = time.perf_counter()
        for i, gate in live:
            remaining = (jobs[i].deadline_at - now) * 1e3
            rung = choose_rung(remaining, estimates, self.margin_ms, self.rungs)
            groups.setdefault(rung, []).append((i, gate))
        for rung in reversed(LADDER):  # cheapest first: tight deadlines are answered first
            group = groups.get(rung)
            if not group:
                continue
            t0 = time.perf_counter()
            scored, stage_ms = self.infer([jobs[i].payment for i, _ in group], rung)
            self.costs.observe(rung, len(group), (time.perf_counter() - t0) * 1e3)
            t1 = time.perf_counter()
            shadows = self._shadow_scores(scored)
            for (i, gate), s, shadow in zip(group, scored, shadows, strict=True):
                jobs[i].lat.update(stage_ms)
                resolve(i, self._finish(jobs[i], s, gate, batch_size, shadow))
            self.costs.observe_tail((time.perf_counter() - t1) * 1e3 / len(group))
        self.costs.decay_unused(groups)
        return deferred

    def _gate_input(self, principal: Principal) -> dict[str, Any]:
        return {
            "client": principal.as_policy_input(),
            "request": {
                "tenant": principal.tenant,
                "purpose": "payment_authorisation",
                "region": self.region,
                "model_version": self.engine.bundle.version,
            },
        }

    def _shadow_scores(self, scored: Sequence[Scored]) -> list[dict[str, float] | None]:
        """The baseline's score beside each served one (one batched call), when enabled."""
        if not self.shadow_baseline or not scored:
            return [None] * len(scored)
        rows = [list(s.features.values()) for s in scored]
        return [{"baseline": float(b)} for b in self.engine.bundle.baseline.predict(rows)]

    def _finish(
        self,
        job: ScoreJob,
        s: Scored,
        gate: GateResult,
        batch_size: int,
        shadow: dict[str, float] | None,
    ) -> ScoreOutcome | Exception:
        """Decision policy → ingest → audit for one scored request."""
        payment, lat = job.payment, job.lat
        tenant, caller = job.principal.tenant, job.principal.id
        t1 = time.perf_counter()
        try:
            decision = self.policy.decide(
                decision_input(payment, s, tenant, self.engine.bundle.version)
            )
        except PolicyUnavailable as exc:
            return exc  # fail closed: not answered, not ingested; the caller audits it
        finally:
            lat["decision_policy"] = (time.perf_counter() - t1) * 1e3
        reasons = list(dict.fromkeys(decision.reasons + s.reasons))
        degraded = list(s.degraded)
        # Fuse the payment after scoring it: its own score never saw it.
        t2 = time.perf_counter()
        try:
            self.ingestor.apply(payment)
        except FeatureStoreUnavailable as exc:
            # The graph has it; its feature observations wait in dead letters for a replay.
            self.ingestor.dead_letters.send(
                {
                    "topic": "payments",
                    "field": "",
                    "reason": f"scored, but its features were not recorded: {exc}",
                    "value": payment.model_dump(mode="json"),
                    "rejected_at": datetime.now(UTC).isoformat(),
                }
            )
            degraded.append("features_not_recorded")
        lat["ingest"] = (time.perf_counter() - t2) * 1e3
        similar, case_id = None, None
        if self.cases is not None and decision.action in ("review", "decline"):
            t_case = time.perf_counter()
            try:
                similar = self.cases.similar_mix(s.embedding, tenant, payment_entities(payment))
                case_id = self.cases.open_case(
                    payment,
                    tenant,
                    s.score,
                    "decline" if decision.action == "decline" else "review",
                    reasons,
                    s.served_by,
                    self.engine.bundle.version,
                    s.embedding,
                )
            except Exception:  # the decision stands; the missing case is flagged and logged
                log.exception("case for %s not recorded", payment.event_id)
                degraded.append("case_not_recorded")
            lat["retrieval"] = (time.perf_counter() - t_case) * 1e3
        t3 = time.perf_counter()
        lat["total"] = (t3 - job.started_at) * 1e3
        receipt = self.audit.append(
            {
                "kind": "inference",
                "at": datetime.now(UTC).isoformat(),
                "request_id": payment.event_id,
                "caller": caller,
                "tenant": tenant,
                "input_hash": job.body_hash,
                "policy": {"gate": gate.revision, "decision": decision.revision},
                "model_version": self.engine.bundle.version,
                "served_by": s.served_by,
                "rung": s.rung,
                "deadline_ms": job.deadline_ms,
                "score": round(s.score, 6),
                "action": decision.action,
                "reasons": reasons,
                "shadow_rules": decision.shadow,
                "degraded": degraded,
                "case_id": case_id,
                "similar_cases": similar,
                "latency_ms": round(lat["total"], 3),
            }
        )
        lat["audit"] = (time.perf_counter() - t3) * 1e3
        out = ScoreOutcome(
            payment,
            s.score,
            decision.action,
            reasons,
            s.served_by,
            self.engine.bundle.version,
            decision.revision,
            lat,
            {"seq": receipt.seq, "hash": receipt.hash},
            shadow,
            decision.shadow,
            rung=s.rung,
            batch_size=batch_size,
            degraded=degraded,
            similar_cases=similar,
        )
        self.idempotency.put(caller, job.key, job.body_hash, dict(out.__dict__))
        if job.key != payment.event_id:
            self.idempotency.bind_transaction(caller, payment.event_id, job.body_hash)
        out.answered_at = time.perf_counter()
        return out

    def _audit_denied(self, job: ScoreJob, reasons: list[str], revision: str) -> None:
        self.audit.append(
            {
                "kind": "inference_denied",
                "at": datetime.now(UTC).isoformat(),
                "request_id": job.payment.event_id,
                "caller": job.principal.id,
                "tenant": job.principal.tenant,
                "input_hash": job.body_hash,
                "policy": {"gate": revision},
                "reasons": reasons,
            }
        )

    def audit_failure(
        self, request_id: str, principal: Principal, payload: dict[str, Any], error: str
    ) -> None:
        """Record a request that failed closed (policy unavailable)."""
        self.audit.append(
            {
                "kind": "inference_failed_closed",
                "at": datetime.now(UTC).isoformat(),
                "request_id": request_id,
                "caller": principal.id,
                "tenant": principal.tenant,
                "input_hash": self.input_hash(payload),
                "error": error,
            }
        )


def decision_input(
    payment: Payment, scored: Scored, tenant: str, model_version: str
) -> dict[str, Any]:
    """The decision policy's input for a scored payment (the API and backtests share it)."""
    return {
        "tenant": tenant,
        "score": scored.score,
        "amount": payment.amount,
        "currency": payment.currency,
        "features": scored.features,
        "entities": payment_entities(payment),
        "model": {"version": model_version, "served_by": scored.served_by},
    }


def payment_entities(p: Payment) -> dict[str, str]:
    """The ids a payment touches, by key (``device_id`` and ``ip`` only when present)."""
    out = {"account_id": p.account_id, "card_id": p.card_id, "merchant_id": p.merchant_id}
    if p.device_id is not None:
        out["device_id"] = p.device_id
    if p.ip is not None:
        out["ip"] = p.ip
    return out
