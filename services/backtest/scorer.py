"""Score a batch of payments with every model of a backtest, each under its own policy.

One :class:`~gnn.engine.ScoringEngine` per model name, all over the same stores; one decision
policy per name (a challenger may differ from the champion in model, in policy bundle, or in
both). Names that share one loaded artifact share its scores (computed once per batch); only
their decisions are taken separately. An artifact scored on the full rung and on its tree (or
policy) rung computes the batch's online features once for both.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from feature_stream.events import Payment
from feature_stream.feature_store import FeatureStore, FeatureStoreUnavailable
from feature_stream.graph_store import GraphStore
from gnn.artifact import ModelBundle
from gnn.engine import Prepared, Scored, ScoringEngine
from gnn.ladder import Rung
from services.backtest.config import LeakageError, ScoredPayment
from services.policy import PolicyEvaluator
from services.scoring import decision_input


class Scorer:
    """Every model's score, action and inputs' newest time for a batch of payments.

    Args:
        models: name → artifact; the first is the champion.
        policy: the decision policy of every name not in ``policies``.
        policies: name → its own decision policy (a policy-bundle challenger).
        rungs: name → ladder rung (default ``"full"``: the GNN).
    """

    def __init__(
        self,
        models: Mapping[str, ModelBundle],
        graph: GraphStore,
        features: FeatureStore,
        policy: PolicyEvaluator,
        policies: Mapping[str, PolicyEvaluator] | None = None,
        rungs: Mapping[str, Rung] | None = None,
        tenant: str = "default",
    ) -> None:
        if not models:
            raise ValueError("a backtest needs at least one model")
        unknown = sorted(set(policies or {}) - set(models))
        if unknown:
            raise ValueError(f"policies given for unknown models {unknown}; models: {list(models)}")
        self.graph = graph
        self.features = features
        self.policies = {name: (policies or {}).get(name, policy) for name in models}
        self.rungs = dict(rungs or {})
        self.tenant = tenant
        self.engines: dict[str, ScoringEngine] = {}
        for name, bundle in models.items():
            self.swap(name, bundle)

    @property
    def versions(self) -> dict[str, str]:
        """Name → the model version scoring now."""
        return {name: e.bundle.version for name, e in self.engines.items()}

    def swap(self, name: str, bundle: ModelBundle) -> None:
        """Score ``name`` with ``bundle`` from the next batch on."""
        self.engines[name] = ScoringEngine(
            bundle, self.graph, self.features, device="cpu", cache_size=0
        )

    def _shared_inputs(self, batch: list[Payment]) -> dict[int, tuple[Prepared, float]]:
        """Inputs computed once per batch for an artifact scored on the full rung and on a
        rung that needs only the features (tree, policy), e.g. a GNN and its own tree side
        by side: ``{id(bundle): (prepared, ms it took)}``. The full rung's timing includes
        them."""
        rungs: dict[int, set[str]] = {}
        engine_of: dict[int, ScoringEngine] = {}
        for name, engine in self.engines.items():
            rungs.setdefault(id(engine.bundle), set()).add(self.rungs.get(name, "full"))
            engine_of.setdefault(id(engine.bundle), engine)
        out = {}
        for key, used in rungs.items():
            if "full" in used and used & {"tree", "policy"}:
                t0 = time.perf_counter()
                try:
                    prep = engine_of[key].prepare(batch)
                except FeatureStoreUnavailable:
                    continue  # each rung then prepares (and flags) its own inputs
                out[key] = (prep, (time.perf_counter() - t0) * 1e3)
        return out

    def score(self, batch: list[Payment]) -> list[ScoredPayment]:
        """Score ``batch`` (each payment at its own event time) with every model.

        Raises :class:`LeakageError` if a score used anything at or after its payment's time."""
        rows = [
            ScoredPayment(p.event_id, p.event_time.timestamp(), p.account_id, p.card_id,
                          p.merchant_id, p.amount)
            for p in batch
        ]  # fmt: skip
        done: dict[tuple[int, str], tuple[list[Scored], float]] = {}
        shared = self._shared_inputs(batch)
        for name, engine in self.engines.items():
            rung = self.rungs.get(name, "full")
            key = (id(engine.bundle), rung)
            if key not in done:
                prep, prep_ms = shared.get(id(engine.bundle), (None, 0.0))
                t0 = time.perf_counter()
                scored, _ = engine.infer(batch, rung, prep)
                ms = (time.perf_counter() - t0) * 1e3 + (prep_ms if rung == "full" else 0.0)
                done[key] = (scored, ms / len(batch))
            scored, per = done[key]
            policy = self.policies[name]
            for row, p, s in zip(rows, batch, scored, strict=True):
                if s.max_time_used >= row.t:
                    raise LeakageError(name, p.event_id, row.t, s.max_time_used)
                decision = policy.decide(decision_input(p, s, self.tenant, engine.bundle.version))
                row.scores[name] = s.score
                row.actions[name] = decision.action
                row.max_time_used[name] = s.max_time_used
                row.ms_per_payment[name] = per
                row.versions[name] = engine.bundle.version
        return rows
