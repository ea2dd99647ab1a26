"""Scorer checks (STYLE.md point 6), run against every model: the GNN and the tree baseline.

Each model is trained briefly on the tiny world of ``conftest.py``. The checks: outputs are
probabilities, training is deterministic under a seed, the score does not depend on the order
in which a neighbourhood is listed, an artifact round trip changes nothing, and payments from
entities never seen before are scored.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import Subgraph
from gnn.artifact import ModelBundle, load_artifact, save_artifact
from gnn.baseline import TreeBaseline
from gnn.engine import ScoringEngine, prepare
from gnn.model import TemporalHeteroGNN
from gnn.tensorize import tensorize
from gnn.train import TrainConfig
from tests.factories import payment
from tests.gnn.conftest import FANOUTS, World, rebuilt


def fit_gnn(
    world: World, seed: int, epochs: int = 30, feature_bins: int = TrainConfig().feature_bins
) -> TemporalHeteroGNN:
    torch.manual_seed(seed)
    model = TemporalHeteroGNN(
        len(FEATURE_NAMES), hidden=16, layers=len(FANOUTS) + 1, feature_bins=feature_bins
    )
    # Any non-trivial scaling will do: the round-trip check needs buffers that differ from init.
    n = len(FEATURE_NAMES)
    model.set_feature_scaling(torch.full((n,), 0.5), torch.full((n,), 2.0))
    model.set_feature_bins((model.compress(torch.tensor(world.rows)) - 0.5) / 2.0)
    batch = tensorize(world.prepared.subgraphs, world.rows)
    target = torch.tensor(world.y, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn(model(batch), target).backward()
        opt.step()
    return model.eval()


def fit_baseline(world: World, seed: int) -> TreeBaseline:
    return TreeBaseline(seed=seed, max_iter=40).fit(world.rows, world.y)


@pytest.fixture(scope="module")
def bundle(world: World) -> ModelBundle:
    return ModelBundle(
        fit_gnn(world, 0),
        fit_baseline(world, 0),
        {"version": "scorer-checks", "fanouts": list(FANOUTS)},
    )


def permuted(g: Subgraph, rng: random.Random) -> Subgraph:
    """The same subgraph with nodes 1.. and all edges listed in another order."""
    order = [0, *rng.sample(range(1, g.num_nodes), g.num_nodes - 1)]  # new index → old index
    return rebuilt(g, order, rng.sample(range(g.num_edges), g.num_edges))


class ScorerChecks:
    """Checks every scorer passes. Subclasses say how to fit, pick and run their model."""

    def fit(self, world: World, seed: int) -> Any:
        raise NotImplementedError

    def pick(self, bundle: ModelBundle) -> Any:
        raise NotImplementedError

    def predict(self, model: Any, subgraphs: list[Subgraph], rows: list[list[float]]) -> np.ndarray:
        raise NotImplementedError

    def test_outputs_are_probabilities(self, bundle: ModelBundle, world: World) -> None:
        model = self.pick(bundle)
        rows = np.asarray(world.rows)
        for scale in (1.0, 1e3, -1e3):
            s = self.predict(model, world.prepared.subgraphs, (rows * scale).tolist())
            assert s.shape == (len(world.payments),)
            assert np.isfinite(s).all()
            assert ((s >= 0.0) & (s <= 1.0)).all()

    def test_learns_the_planted_ring(self, bundle: ModelBundle, world: World) -> None:
        s = self.predict(self.pick(bundle), world.prepared.subgraphs, world.rows)
        y = np.asarray(world.y, dtype=bool)
        assert s[y].mean() > s[~y].mean() + 0.3

    def test_deterministic_under_a_seed(self, bundle: ModelBundle, world: World) -> None:
        first = self.predict(self.pick(bundle), world.prepared.subgraphs, world.rows)
        again = self.predict(self.pick(bundle), world.prepared.subgraphs, world.rows)
        retrained = self.predict(self.fit(world, 0), world.prepared.subgraphs, world.rows)
        np.testing.assert_array_equal(first, again)
        np.testing.assert_array_equal(first, retrained)

    def test_invariant_to_neighbour_order(self, bundle: ModelBundle, world: World) -> None:
        rng = random.Random(1)
        subgraphs = world.prepared.subgraphs
        shuffled = [permuted(g, rng) for g in subgraphs]
        assert any(a.src != b.src for a, b in zip(subgraphs, shuffled, strict=True))
        model = self.pick(bundle)
        np.testing.assert_allclose(
            self.predict(model, shuffled, world.rows),
            self.predict(model, subgraphs, world.rows),
            rtol=0,
            atol=1e-5,
        )

    def test_save_load_round_trip(self, bundle: ModelBundle, world: World, tmp_path: Path) -> None:
        loaded = load_artifact(save_artifact(tmp_path / "model", bundle, "# test model\n"))
        assert loaded.version == "scorer-checks"
        assert loaded.fanouts == FANOUTS
        np.testing.assert_array_equal(
            self.predict(self.pick(loaded), world.prepared.subgraphs, world.rows),
            self.predict(self.pick(bundle), world.prepared.subgraphs, world.rows),
        )

    def test_unseen_entities_do_not_crash(self, bundle: ModelBundle, world: World) -> None:
        stranger = payment(
            "stranger",
            3 * 86400,
            account="new-a",
            card="new-c",
            merchant="new-m",
            device="new-d",
            ip="192.0.2.1",
            amount=55.0,
        )
        for graph, features in (
            (world.graph, world.features),
            (InMemoryGraphStore(), InMemoryFeatureStore()),
        ):
            prep = prepare([stranger], graph, features, FANOUTS)
            s = self.predict(
                self.pick(bundle), prep.subgraphs, [list(f.values) for f in prep.features]
            )
            assert s.shape == (1,)
            assert 0.0 <= float(s[0]) <= 1.0


class TestGNNScorer(ScorerChecks):
    def fit(self, world: World, seed: int) -> TemporalHeteroGNN:
        return fit_gnn(world, seed)

    def pick(self, bundle: ModelBundle) -> TemporalHeteroGNN:
        return bundle.gnn

    def predict(
        self, model: TemporalHeteroGNN, subgraphs: list[Subgraph], rows: list[list[float]]
    ) -> np.ndarray:
        return model.predict(tensorize(subgraphs, rows)).numpy()


class TestTreeBaselineScorer(ScorerChecks):
    def fit(self, world: World, seed: int) -> TreeBaseline:
        return fit_baseline(world, seed)

    def pick(self, bundle: ModelBundle) -> TreeBaseline:
        return bundle.baseline

    def predict(
        self, model: TreeBaseline, subgraphs: list[Subgraph], rows: list[list[float]]
    ) -> np.ndarray:
        return model.predict(rows)


def test_engine_serves_either_model_with_clamped_scores(bundle: ModelBundle, world: World) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features)
    sample = world.payments[:20]
    for use_gnn, served in ((True, "gnn"), (False, "baseline")):
        scored, timings = engine.score(sample, use_gnn=use_gnn)
        assert [s.served_by for s in scored] == [served] * len(sample)
        assert all(0.0 <= s.score <= 1.0 for s in scored)
        assert all(
            s.max_time_used < p.event_time.timestamp() for s, p in zip(scored, sample, strict=True)
        )
        assert {"features", "sampling", "gnn" if use_gnn else "fallback"} <= set(timings)
    assert engine.score([]) == ([], {})


def test_piecewise_linear_feature_code_follows_the_training_quantiles() -> None:
    model = TemporalHeteroGNN(2, hidden=8, layers=1, feature_bins=4)
    # Feature 0 takes 5 distinct values (4 bins at its quantiles); feature 1 is constant.
    model.set_feature_bins(
        torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    )
    code = ((torch.tensor([[2.5, 1.0]]).unsqueeze(-1) - model.bin_low) * model.bin_scale).clamp(
        0, 1
    )
    torch.testing.assert_close(code[0, 0], torch.tensor([1.0, 1.0, 0.5, 0.0]))
    torch.testing.assert_close(code[0, 1], torch.zeros(4))  # no spread: no bins


def test_a_model_without_bins_loads_from_a_config_that_predates_them() -> None:
    old = TemporalHeteroGNN(len(FEATURE_NAMES), hidden=8, layers=2)
    config = {k: v for k, v in old.config.items() if k != "feature_bins"}
    again = TemporalHeteroGNN(**config)  # type: ignore[arg-type]
    again.load_state_dict(old.state_dict())
    assert again.config == old.config
