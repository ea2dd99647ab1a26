"""Prometheus metrics of one API process (own registry, so tests can build many apps).

``riskgraph_stage_latency_ms{stage}`` has one histogram per stage of a score, in
milliseconds: ``auth``, ``queue`` (wait for the inference worker), ``gate_policy``,
``features``, ``sampling``, ``gnn`` (forward pass), ``fallback`` (tree model), ``rules``
(policy-only rung), ``decision_policy``, ``ingest``, ``audit``, ``total`` (server receipt to
audit record), ``handoff`` (from the worker handing the answer back to the event loop
taking it up: the wait for the interpreter lock and the loop) and ``http`` (server receipt to
response built). ``features``, ``sampling`` and
the model stages are per micro-batch: each request observes its group's time.
``retrieval`` (similar cases and the case record) is observed only by the answers that open
a case (review or decline).

``riskgraph_invalid_requests_total{route,field}`` counts the 422s by route template and the
field at fault (a rejected event of ``/v1/events`` is a dead letter, in
``riskgraph_events_total{outcome="dead_letter"}``).

``riskgraph_heap_refreeze_ms`` has the pauses of :class:`services.heap.Refreezer` (a full
garbage-collector pass and a freeze, between requests).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250, 1000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "riskgraph_score_requests",
            "Score requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.invalid = Counter(
            "riskgraph_invalid_requests",
            "Requests refused with 422, by route and the field at fault",
            ["route", "field"],
            registry=self.registry,
        )
        self.served = Counter(
            "riskgraph_scores",
            "Scores by ladder rung, model that served and action",
            ["rung", "served_by", "action"],
            registry=self.registry,
        )
        self.stage_ms = Histogram(
            "riskgraph_stage_latency_ms",
            "Per-stage latency (ms)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "riskgraph_batch_size",
            "Requests per inference micro-batch",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.heap_refreeze_ms = Histogram(
            "riskgraph_heap_refreeze_ms",
            "Pauses of the collector's full pass and freeze between requests (ms)",
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "riskgraph_shed",
            "Score requests refused with 429 before any work was done",
            registry=self.registry,
        )
        self.degraded = Counter(
            "riskgraph_degraded",
            "Scores answered in a degraded way, by what was missing",
            ["reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "riskgraph_events",
            "Events posted to /v1/events by result",
            ["result"],
            registry=self.registry,
        )
