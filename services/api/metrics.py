"""Prometheus metrics of one API process (own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250, 1000)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "riskgraph_score_requests",
            "Score requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.served = Counter(
            "riskgraph_scores",
            "Scores by model that served and action",
            ["served_by", "action"],
            registry=self.registry,
        )
        self.stage_ms = Histogram(
            "riskgraph_stage_latency_ms",
            "Per-stage latency (ms)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "riskgraph_events",
            "Events posted to /v1/events by result",
            ["result"],
            registry=self.registry,
        )
