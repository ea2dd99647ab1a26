"""The scoring engine: features + sampled neighbourhood → GNN (or fallback) → score.

One code path for the scoring API, training-set construction and backtests: all of them call
:meth:`ScoringEngine.prepare` and :meth:`ScoringEngine.score` on payments at their event time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from feature_stream.events import Payment
from feature_stream.feature_store import FeatureStore
from feature_stream.features import FeatureVector, compute_features
from feature_stream.graph_store import GraphStore, Subgraph
from gnn.artifact import ModelBundle
from gnn.reasons import reason_codes
from gnn.tensorize import tensorize

ServedBy = Literal["gnn", "baseline"]


@dataclass
class Prepared:
    """Point-in-time inputs for a batch of payments."""

    features: list[FeatureVector]
    subgraphs: list[Subgraph]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def max_time_used(self, i: int) -> float:
        """Newest timestamp any input of payment ``i`` used (must be < its event time)."""
        return max(self.features[i].as_of, self.subgraphs[i].max_time_used)


@dataclass
class Scored:
    """The model's answer for one payment."""

    score: float
    served_by: ServedBy
    reasons: list[str]
    max_time_used: float
    features: dict[str, float]


def prepare(
    payments: Sequence[Payment],
    graph: GraphStore,
    features: FeatureStore,
    fanouts: Sequence[int],
    with_subgraphs: bool = True,
) -> Prepared:
    """Online features and sampled neighbourhoods of payments, each at its own event time."""
    t0 = time.perf_counter()
    feats = [compute_features(p, features) for p in payments]
    t1 = time.perf_counter()
    subgraphs = (
        graph.sample(payments, fanouts)
        if with_subgraphs
        else [Subgraph(t=p.event_time.timestamp()) for p in payments]
    )
    t2 = time.perf_counter()
    return Prepared(feats, subgraphs, {"features": (t1 - t0) * 1e3, "sampling": (t2 - t1) * 1e3})


class ScoringEngine:
    """Scores payments against a graph store and a feature store with a loaded artifact."""

    def __init__(
        self, bundle: ModelBundle, graph: GraphStore, features: FeatureStore, device: str = "cpu"
    ) -> None:
        self.bundle = bundle
        self.graph = graph
        self.features = features
        self.device = torch.device(device)
        self.gnn = bundle.gnn.to(self.device).eval()

    def prepare(self, payments: Sequence[Payment], with_subgraphs: bool = True) -> Prepared:
        return prepare(payments, self.graph, self.features, self.bundle.fanouts, with_subgraphs)

    def score(
        self, payments: Sequence[Payment], use_gnn: bool = True
    ) -> tuple[list[Scored], dict[str, float]]:
        """Score a batch. ``use_gnn=False`` serves the tree fallback and skips sampling."""
        if not payments:
            return [], {}
        prep = self.prepare(payments, with_subgraphs=use_gnn)
        rows = [list(f.values) for f in prep.features]
        t0 = time.perf_counter()
        if use_gnn:
            batch = tensorize(prep.subgraphs, rows).to(self.device)
            scores = self.gnn.predict(batch).float().cpu().tolist()
            served: ServedBy = "gnn"
            stage = "gnn"
        else:
            scores = self.bundle.baseline.predict(rows).tolist()
            served = "baseline"
            stage = "fallback"
        prep.timings_ms[stage] = (time.perf_counter() - t0) * 1e3
        out = []
        for i, s in enumerate(scores):
            fd = prep.features[i].as_dict()
            sg = prep.subgraphs[i] if use_gnn else None
            out.append(
                Scored(
                    score=min(1.0, max(0.0, float(s))) if math.isfinite(s) else 1.0,
                    served_by=served,
                    reasons=reason_codes(fd, sg),
                    max_time_used=prep.max_time_used(i),
                    features=fd,
                )
            )
        return out, prep.timings_ms
