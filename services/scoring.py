"""The scoring pipeline behind ``POST /v1/score``.

idempotency check → gate policy → point-in-time features and neighbourhood → GNN (or the tree
fallback when the deadline is at risk) → decision policy → ingest → audit record → answer. The
payment is fused into the graph after it is scored, so its own score never sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feature_stream.events import Payment
from feature_stream.ingest import Ingestor
from gnn.engine import ScoringEngine
from services.audit import AuditSink
from services.auth import Principal
from services.idempotency import IdempotencyCache
from services.policy import PolicyEvaluator


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


class GateDenied(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class ScoringService:
    """Serialises scoring over the embedded stores (they are single-writer)."""

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
    ) -> None:
        self.engine = engine
        self.ingestor = ingestor
        self.policy = policy
        self.audit = audit
        self.audit_key = audit_secret.encode()
        self.shadow_baseline = shadow_baseline
        self.region = region
        self.idempotency = idempotency if idempotency is not None else IdempotencyCache()
        self.lock = threading.Lock()
        self._gnn_ms = 5.0  # running estimate of the GNN path cost (sampling + forward)

    def input_hash(self, payload: dict[str, Any]) -> str:
        """Keyed hash of the request: the audit log proves what was scored without holding PII."""
        body = json.dumps(payload, sort_keys=True, default=str).encode()
        return hmac.new(self.audit_key, body, hashlib.sha256).hexdigest()

    def score(
        self,
        payment: Payment,
        principal: Principal,
        deadline_ms: float,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> ScoreOutcome:
        """Score one payment for ``principal``.

        A repeated ``idempotency_key`` (default: the transaction id) from the same caller
        returns the first outcome without scoring or ingesting again; the same key with another
        body raises :class:`~services.idempotency.IdempotencyConflict`.
        """
        t_start = time.perf_counter()
        lat: dict[str, float] = {}
        tenant, caller = principal.tenant, principal.id
        key = idempotency_key or payment.event_id
        body_hash = self.input_hash(payload)
        with self.lock:
            t0 = time.perf_counter()
            lat["queue"] = (t0 - t_start) * 1e3
            cached = self.idempotency.get(caller, key, body_hash)
            if cached is not None:
                return ScoreOutcome(**{**cached, "replayed": True})
            gate_input = {
                "client": principal.as_policy_input(),
                "request": {
                    "tenant": tenant,
                    "purpose": "payment_authorisation",
                    "region": self.region,
                    "model_version": self.engine.bundle.version,
                },
            }
            try:
                gate = self.policy.gate(gate_input)
            finally:
                lat["gate_policy"] = (time.perf_counter() - t0) * 1e3
            if not gate.allow:
                self._audit_denied(payment, principal, body_hash, gate.reasons, gate.revision)
                raise GateDenied(gate.reasons)
            remaining = deadline_ms - (time.perf_counter() - t_start) * 1e3
            use_gnn = remaining > 2.0 * self._gnn_ms
            scored, stage_ms = self.engine.score([payment], use_gnn=use_gnn)
            lat.update(stage_ms)
            s = scored[0]
            if use_gnn:
                cost = stage_ms.get("sampling", 0.0) + stage_ms.get("gnn", 0.0)
                self._gnn_ms = 0.9 * self._gnn_ms + 0.1 * cost
            else:
                # The estimate only updates when the GNN runs; let it decay while the fallback
                # serves so a transient slowdown does not pin every later request to it.
                self._gnn_ms *= 0.98
            shadow = None
            if self.shadow_baseline:
                base = self.engine.bundle.baseline.predict([list(s.features.values())])
                shadow = {"baseline": float(base[0])}
            t1 = time.perf_counter()
            decision = self.policy.decide(
                {
                    "tenant": tenant,
                    "score": s.score,
                    "amount": payment.amount,
                    "currency": payment.currency,
                    "features": s.features,
                    "entities": _entities(payment),
                    "model": {"version": self.engine.bundle.version, "served_by": s.served_by},
                }
            )
            lat["decision_policy"] = (time.perf_counter() - t1) * 1e3
            reasons = list(dict.fromkeys(decision.reasons + s.reasons))
            # Fuse the payment after scoring it: its own score never saw it.
            t2 = time.perf_counter()
            self.ingestor.apply(payment)
            lat["ingest"] = (time.perf_counter() - t2) * 1e3
            t3 = time.perf_counter()
            lat["total"] = (t3 - t_start) * 1e3
            receipt = self.audit.append(
                {
                    "kind": "inference",
                    "at": datetime.now(UTC).isoformat(),
                    "request_id": payment.event_id,
                    "caller": caller,
                    "tenant": tenant,
                    "input_hash": body_hash,
                    "policy": {"gate": gate.revision, "decision": decision.revision},
                    "model_version": self.engine.bundle.version,
                    "served_by": s.served_by,
                    "score": round(s.score, 6),
                    "action": decision.action,
                    "reasons": reasons,
                    "shadow_rules": decision.shadow,
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
            )
            self.idempotency.put(caller, key, body_hash, dict(out.__dict__))
        return out

    def _audit_denied(
        self,
        payment: Payment,
        principal: Principal,
        body_hash: str,
        reasons: list[str],
        revision: str,
    ) -> None:
        self.audit.append(
            {
                "kind": "inference_denied",
                "at": datetime.now(UTC).isoformat(),
                "request_id": payment.event_id,
                "caller": principal.id,
                "tenant": principal.tenant,
                "input_hash": body_hash,
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


def _entities(p: Payment) -> dict[str, str]:
    out = {"account_id": p.account_id, "card_id": p.card_id, "merchant_id": p.merchant_id}
    if p.device_id is not None:
        out["device_id"] = p.device_id
    if p.ip is not None:
        out["ip"] = p.ip
    return out
