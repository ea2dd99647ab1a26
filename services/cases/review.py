"""Analyst review: cases from flagged payments, similar past cases, evidence, verdicts.

Every review or decline becomes a case (:meth:`ReviewService.open_case`, called by the
scoring service after its decision, with the GNN embedding of the served subgraph). Analysts
list, open and judge cases; every action is authorised by the *review* policy (fail closed:
no policy answer, no action) and written to the audit log, denials included.

A verdict of fraud or legitimate becomes a label event (``source="analyst"``) fused into the
graph at the verdict's time, so the next score of a connected payment sees it; the case's
embedding joins the similar-case index, so later cases find it as a precedent.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from feature_stream.event_io import EventSink
from feature_stream.events import LabelEvent, Payment
from feature_stream.graph_schema import NODE_TYPES
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, Subgraph
from gnn.explain import explain
from gnn.reasons import REASON_CODES
from services.audit import AuditSink, Receipt
from services.auth import Principal
from services.cases.evidence import (
    LINK_KINDS,
    POOL,
    Precedent,
    drivers,
    narrative,
    precedent_mix,
    rerank,
    shared_kinds,
)
from services.cases.model import Action, Case, CaseStatus, SortKey, Verdict, case_id_for
from services.cases.similar import SimilarCaseIndex
from services.cases.store import CaseStore
from services.cases.tenant_nearest import nearest_in_tenant
from services.policy import PolicyEvaluator, ReviewResult
from services.scoring import ScoringService, payment_entities

PII_KINDS = ("account", "card", "device", "ip")
LABELS = {LABEL_FRAUD: "fraud", LABEL_LEGIT: "legit"}


class Forbidden(Exception):
    """The review policy refused the action; ``reasons`` are its codes."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


def mask(kind: str, value: str) -> str:
    """A PII id as an analyst without ``view_pii`` sees it: its last four characters."""
    kind = kind.removesuffix("_id")
    if kind not in PII_KINDS or not value:
        return value
    return "•••" + value[-4:]


class ReviewService:
    """Cases, precedents, evidence and verdicts over one case store and one index."""

    def __init__(
        self,
        store: CaseStore,
        index: SimilarCaseIndex,
        policy: PolicyEvaluator,
        audit: AuditSink,
        scoring: ScoringService,
        note_secret: str,
        k: int = 10,
    ) -> None:
        self.store = store
        self.index = index
        self.policy = policy
        self.audit = audit
        self.scoring = scoring
        self.k = k
        self._note_key = note_secret.encode()
        self._explained: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._explained_lock = threading.Lock()
        self.publish_label: Callable[[LabelEvent], None] = self._fuse_label
        self._label_sink: EventSink | None = None

    def publish_labels_to(self, sink: EventSink) -> None:
        """Service mode: a verdict's label is also sent to the labels topic (``sink``), so the
        stream workers write it to Neo4j and Redis and every replica's window gets it; it is
        still fused here first, so this replica's next score sees it at once. A verdict is
        answered only once the broker has acknowledged its label."""
        self._label_sink = sink

        def publish(label: LabelEvent) -> None:
            self._fuse_label(label)
            sink.send(label.model_dump(mode="json"))
            sink.flush()

        self.publish_label = publish

    def close(self) -> None:
        if self._label_sink is not None:
            self._label_sink.close()
        self.store.close()

    # -- from the scoring path -------------------------------------------------------------------
    def open_case(
        self,
        payment: Payment,
        tenant: str,
        score: float,
        action: Action,
        reasons: list[str],
        served_by: str,
        model_version: str,
        embedding: Sequence[float] | None,
    ) -> str:
        """Record a review or decline as an open case (a repeat changes nothing); returns its
        id."""
        case_id = case_id_for(payment.event_id)
        self.store.add(
            Case(
                case_id=case_id,
                transaction_id=payment.event_id,
                tenant=tenant,
                created_at=payment.ts,
                score=score,
                action=action,
                reasons=list(reasons),
                served_by=served_by,
                model_version=model_version,
                amount=payment.amount,
                currency=payment.currency,
                entities=payment_entities(payment),
                status="open",
                embedding=tuple(float(x) for x in embedding) if embedding is not None else None,
            )
        )
        return case_id

    def similar_mix(
        self, embedding: Sequence[float] | None, tenant: str, entities: dict[str, str]
    ) -> dict[str, int] | None:
        """How the ``k`` resolved cases most like this payment ended (``None`` without an
        embedding or before any verdict); the score explanation shows it."""
        if embedding is None or len(self.index) == 0:
            return None
        return precedent_mix(self.nearest(embedding, tenant, entities))

    def nearest(
        self,
        embedding: Sequence[float],
        tenant: str,
        entities: dict[str, str],
        exclude: Sequence[str] = (),
    ) -> list[Precedent]:
        """The ``k`` resolved cases of ``tenant`` most like this one: nearest embeddings,
        re-ranked so that those sharing an account, card, device or IP come first."""
        mine = nearest_in_tenant(
            self.index,
            self.store,
            np.asarray(embedding, dtype=np.float32),
            tenant,
            self.k * POOL,
            exclude=tuple(exclude),
        )
        hits = [(c.case_id, d) for c, d in mine]
        found = {c.case_id: c for c, _ in mine}
        links = {
            cid: len(
                shared_kinds({k: v for k, v in entities.items() if k in LINK_KINDS}, c.entities)
            )
            for cid, c in found.items()
        }
        best = rerank(hits, links, self.k)
        return [
            Precedent(found[cid], d, shared_kinds(entities, found[cid].entities)) for cid, d in best
        ]

    # -- analyst actions -------------------------------------------------------------------------
    def authorize(self, who: Principal, action: str, case: Case | None) -> ReviewResult:
        """The review policy's answer; raises :class:`Forbidden` (audited) when it says no."""
        result = self.policy.review(
            {
                "user": {"id": who.id, "tenant": who.tenant, "roles": list(who.roles)},
                "action": action,
                "case": {
                    "tenant": case.tenant if case is not None else who.tenant,
                    "assignee": case.assignee if case is not None else None,
                },
            }
        )
        if not result.allow:
            self._audit(who, action, case, result, outcome="denied", reasons=result.reasons)
            raise Forbidden(result.reasons)
        return result

    def queue(
        self,
        who: Principal,
        *,
        status: CaseStatus | None = "open",
        reason: str | None = None,
        min_score: float | None = None,
        sort: SortKey = "score",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of the caller's tenant's cases, filtered and sorted."""
        allowed = self.authorize(who, "view_case", None)
        cases = self.store.list(
            who.tenant,
            status=status,
            reason=reason,
            min_score=min_score,
            sort=sort,
            descending=descending,
            limit=limit,
            offset=offset,
        )
        total = self.store.count(who.tenant, status=status, reason=reason, min_score=min_score)
        self._audit(who, "view_queue", None, allowed, outcome="ok")
        return {
            "cases": [summary(c, allowed.unmask_pii) for c in cases],
            "total": total,
            "unmask_pii": allowed.unmask_pii,
        }

    def detail(self, who: Principal, case_id: str) -> dict[str, Any]:
        """The case page: the case, its evidence, its subgraph and its timeline."""
        case = self._get(case_id)
        allowed = self.authorize(who, "view_case", case)
        unmask = allowed.unmask_pii
        show = (lambda kind, value: value) if unmask else mask
        explanation, subgraph = self._explanation(case)
        precedents = self.precedents(case)
        top = [{**d, "id": show(str(d["type"]), str(d["id"]))} for d in drivers(explanation)]
        hits = [r for r in case.reasons if r not in REASON_CODES]
        evidence = {
            "narrative": narrative(case, precedents, drivers(explanation), hits, show),
            "precedents": [
                {**p.as_dict(), "created_at": _iso(p.case.created_at)} for p in precedents
            ],
            "precedent_mix": precedent_mix(precedents),
            "drivers": top,
            "policy_hits": hits,
        }
        self._audit(who, "view_case", case, allowed, outcome="ok")
        return {
            "case": summary(case, unmask, full=True),
            "unmask_pii": unmask,
            "evidence": evidence,
            "subgraph": _graph_view(case, explanation, show),
            "timeline": timeline(subgraph, show) if subgraph is not None else [],
        }

    def precedents(self, case: Case) -> list[Precedent]:
        """The ``k`` resolved cases most like this one, with the entities they share."""
        if case.embedding is None or len(self.index) == 0:
            return []
        return self.nearest(case.embedding, case.tenant, case.entities, exclude=(case.case_id,))

    def verdict(self, who: Principal, case_id: str, verdict: Verdict, note: str) -> dict[str, Any]:
        case = self._get(case_id)
        resolved = case.status in ("fraud", "legit")
        allowed = self.authorize(who, "override" if resolved else "label", case)
        updated, receipt = self._apply_verdict(who, case, verdict, note, allowed, "label")
        return {
            "case": summary(updated, allowed.unmask_pii, full=True),
            "receipt": {"seq": receipt.seq, "hash": receipt.hash},
        }

    def rings(self, who: Principal, candidates: int = 300) -> dict[str, Any]:
        """Open alerts connected through shared accounts, cards, devices or IPs, grouped."""
        allowed = self.authorize(who, "view_case", None)
        rings = [r.view(allowed.unmask_pii) for r in self._rings(who, candidates)]
        self._audit(who, "view_rings", None, allowed, outcome="ok")
        return {"rings": rings}

    def ring_verdict(
        self, who: Principal, ring_id: str, verdict: Verdict, note: str
    ) -> dict[str, Any]:
        ring = next((r for r in self._rings(who, 300) if r.ring_id == ring_id), None)
        if ring is None:
            raise KeyError(ring_id)
        allowed = [self.authorize(who, "bulk_label", c) for c in ring.cases]
        cases, receipts = [], []
        for case, ok in zip(ring.cases, allowed, strict=True):
            updated, receipt = self._apply_verdict(who, case, verdict, note, ok, "bulk_label")
            cases.append(summary(updated, ok.unmask_pii, full=True))
            receipts.append({"seq": receipt.seq, "hash": receipt.hash})
        return {"cases": cases, "receipts": receipts}

    # -- internals -------------------------------------------------------------------------------
    def _get(self, case_id: str) -> Case:
        case = self.store.get(case_id)
        if case is None:
            raise KeyError(case_id)
        return case

    def _apply_verdict(
        self,
        who: Principal,
        case: Case,
        verdict: Verdict,
        note: str,
        allowed: ReviewResult,
        action: str,
    ) -> tuple[Case, Receipt]:
        now = time.time()
        updated = self.store.set_verdict(case.case_id, verdict, who.id, note, now)
        if verdict in ("fraud", "legit"):
            self.publish_label(
                LabelEvent(
                    event_id=f"verdict-{case.case_id}-{int(now * 1e6)}",
                    event_time=datetime.fromtimestamp(now, UTC),
                    transaction_id=case.transaction_id,
                    account_id=case.entities["account_id"],
                    is_fraud=verdict == "fraud",
                    source="analyst",
                )
            )
            if updated.embedding is not None:
                self.index.add(case.case_id, np.asarray(updated.embedding, dtype=np.float32))
        receipt = self._audit(
            who, action, updated, allowed, outcome="ok", verdict=verdict, note=note
        )
        return updated, receipt

    def _fuse_label(self, label: LabelEvent) -> None:
        """Embedded mode: fuse the label into the graph and features under the worker's lock."""
        with self.scoring.lock:
            self.scoring.ingestor.apply(label)

    def _explanation(self, case: Case) -> tuple[dict[str, Any], Subgraph | None]:
        """The explanation of the served score (cached: it is point in time, so it does not
        change) and the sampled neighbourhood, or empty when the payment left the graph."""
        engine = self.scoring.engine
        rec = engine.graph.transaction(case.transaction_id)
        if rec is None:
            return {"nodes": [], "edges": []}, None
        payment = Payment(
            event_id=rec.transaction_id,
            event_time=datetime.fromtimestamp(rec.ts, UTC),
            account_id=rec.account_id,
            card_id=rec.card_id,
            merchant_id=rec.merchant_id,
            amount=rec.amount,
            currency=case.currency,
            channel=rec.channel,
            device_id=rec.device_id,
            ip=rec.ip,
        )
        with self._explained_lock:
            cached = self._explained.get(case.case_id)
        with self.scoring.lock:  # the engine and stores belong to the inference worker
            (subgraph,) = engine.graph.sample([payment], engine.bundle.fanouts)
            if cached is None:
                cached = explain(engine, payment).as_dict()
        with self._explained_lock:
            self._explained[case.case_id] = cached
            while len(self._explained) > 512:
                self._explained.popitem(last=False)
        return cached, subgraph

    def _rings(self, who: Principal, candidates: int) -> list[Ring]:
        open_cases = [
            c
            for status in ("open", "escalated")
            for c in self.store.list(who.tenant, status=status, limit=candidates)
        ]
        by_id = {c.case_id: c for c in open_cases}
        parent = {cid: cid for cid in by_id}

        def root(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        links: dict[str, set[tuple[str, str]]] = {cid: set() for cid in by_id}
        for c in open_cases:
            ents = {k: v for k, v in c.entities.items() if k in LINK_KINDS and v}
            for other, kinds in self.store.sharing(who.tenant, ents, exclude_case_id=c.case_id):
                if other.case_id not in by_id:
                    continue
                parent[root(other.case_id)] = root(c.case_id)
                for kind in kinds:
                    key = kind if kind.endswith("_id") or kind == "ip" else f"{kind}_id"
                    if key in LINK_KINDS and c.entities.get(key):
                        links[c.case_id].add((key.removesuffix("_id"), c.entities[key]))
        groups: dict[str, list[Case]] = {}
        for cid, case in by_id.items():
            groups.setdefault(root(cid), []).append(case)
        rings = [
            Ring(
                sorted(g, key=lambda c: -c.score),
                sorted(set().union(*(links[c.case_id] for c in g))),
            )
            for g in groups.values()
            if len(g) >= 2
        ]
        rings.sort(key=lambda r: (-len(r.cases), -r.cases[0].score))
        return rings

    def _audit(
        self,
        who: Principal,
        action: str,
        case: Case | None,
        result: ReviewResult,
        *,
        outcome: str,
        reasons: Sequence[str] = (),
        verdict: str | None = None,
        note: str | None = None,
    ) -> Receipt:
        """One record per analyst action; the note is kept as a keyed hash (it may hold PII)."""
        return self.audit.append(
            {
                "kind": "analyst_action",
                "at": datetime.now(UTC).isoformat(),
                "action": action,
                "outcome": outcome,
                "user": who.id,
                "tenant": who.tenant,
                "roles": list(who.roles),
                "case_id": case.case_id if case is not None else None,
                "transaction_id": case.transaction_id if case is not None else None,
                "verdict": verdict,
                "note_hash": (
                    hmac.new(self._note_key, note.encode(), hashlib.sha256).hexdigest()
                    if note
                    else None
                ),
                "policy": {"review": result.revision},
                "reasons": list(reasons),
            }
        )


class Ring:
    """Open cases tied together by shared entities."""

    def __init__(self, cases: list[Case], shared: list[tuple[str, str]]) -> None:
        self.cases = cases
        self.shared = shared
        digest = hashlib.sha256(",".join(sorted(c.case_id for c in cases)).encode())
        self.ring_id = "ring-" + digest.hexdigest()[:12]

    def view(self, unmask: bool) -> dict[str, Any]:
        show = (lambda kind, value: value) if unmask else mask
        return {
            "ring_id": self.ring_id,
            "case_ids": [c.case_id for c in self.cases],
            "shared_entities": [{"kind": k, "value": show(k, v)} for k, v in self.shared],
            "max_score": max(c.score for c in self.cases),
            "total_amount": round(sum(c.amount for c in self.cases), 2),
        }


def summary(case: Case, unmask: bool, full: bool = False) -> dict[str, Any]:
    """A case as the API shows it: ISO times, PII masked unless the policy allows."""
    out: dict[str, Any] = {
        "case_id": case.case_id,
        "transaction_id": case.transaction_id,
        "created_at": _iso(case.created_at),
        "score": round(case.score, 6),
        "action": case.action,
        "reasons": case.reasons,
        "amount": case.amount,
        "currency": case.currency,
        "status": case.status,
        "assignee": case.assignee,
        "entities": {k: (v if unmask else mask(k, v)) for k, v in case.entities.items()},
    }
    if full:
        out |= {
            "served_by": case.served_by,
            "model_version": case.model_version,
            "verdict_by": case.verdict_by,
            "verdict_note": case.verdict_note,
            "verdict_at": _iso(case.verdict_at) if case.verdict_at is not None else None,
        }
    return out


def timeline(g: Subgraph, show: Callable[[str, str], str]) -> list[dict[str, Any]]:
    """The neighbourhood's payments in time order, each with the entity that links it here."""
    via: dict[int, tuple[str, str]] = {}
    for s, d in zip(g.src, g.dst, strict=True):
        if NODE_TYPES[g.node_type[s]] == "transaction" and d != 0:
            kind = NODE_TYPES[g.node_type[d]]
            via.setdefault(s, (kind, show(kind, g.node_id[d])))
    rows = []
    for i in range(g.num_nodes):
        if NODE_TYPES[g.node_type[i]] != "transaction":
            continue
        amount, age_s, label, _ = g.node_attr[i]
        kind, ent = via.get(i, ("", ""))
        rows.append(
            {
                "time": _iso(g.t - age_s),
                "type": "this payment" if i == 0 else "payment",
                "account_id": ent if kind == "account" else "",
                "summary": (
                    f"{amount:,.2f}"
                    + (f" via {kind} {ent}" if kind else "")
                    + (f", labelled {LABELS[int(label)]}" if int(label) in LABELS else "")
                ),
            }
        )
    rows.sort(key=lambda r: r["time"], reverse=True)
    return rows


def _graph_view(
    case: Case, explanation: dict[str, Any], show: Callable[[str, str], str]
) -> dict[str, Any]:
    """The served subgraph for the page: the query payment as node 0, ids masked as the
    policy says, times in ISO 8601."""
    if not explanation.get("nodes"):
        return {"nodes": [], "edges": []}
    query = {
        "index": 0,
        "type": "transaction",
        "id": case.transaction_id,
        "hop": 0,
        "label": case.status if case.status in ("fraud", "legit") else "unknown",
        "contribution": None,
    }
    nodes = [query] + [
        {
            "index": n["index"],
            "type": n["type"],
            "id": show(str(n["type"]), str(n["id"])),
            "hop": n["hop"],
            "label": n.get("label") or "unknown",
            "contribution": n.get("contribution"),
        }
        for n in explanation.get("nodes", [])
        if n["index"] != 0
    ]
    edges = [
        {
            "src": e["src"],
            "dst": e["dst"],
            "relation": e["relation"],
            "time": _iso(float(e["time"])),
            "contribution": e.get("contribution"),
        }
        for e in explanation.get("edges", [])
    ]
    return {"nodes": nodes, "edges": edges}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
