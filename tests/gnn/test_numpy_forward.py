"""The numpy pass against the torch pass it stands in for on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import ThreadpoolController

from feature_stream.features import FEATURE_NAMES
from gnn.artifact import ModelBundle
from gnn.baseline import TreeBaseline
from gnn.engine import ScoringEngine, hop1_rows, set_math_threads
from gnn.fused import FusedForward
from gnn.model import TemporalHeteroGNN
from gnn.numpy_forward import NumpyForward, _needed_rows
from gnn.tensorize import tensorize
from tests.gnn.conftest import FANOUTS, World


def model(world: World, seed: int, bins: int, prior: bool) -> TemporalHeteroGNN:
    torch.manual_seed(seed)
    gnn = TemporalHeteroGNN(
        len(FEATURE_NAMES), hidden=16, layers=len(FANOUTS) + 1, feature_bins=bins, tree_prior=prior
    )
    gnn.fit_feature_encoding(torch.tensor(world.rows))
    # Weights away from their initial scale, so that every term of the pass matters.
    with torch.no_grad():
        for p in gnn.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return gnn.eval()


@pytest.mark.parametrize(("bins", "prior"), [(0, False), (6, True)])
@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (5, 7), (0, 40)])
def test_the_numpy_pass_is_the_torch_pass(
    world: World, bins: int, prior: bool, lo: int, hi: int
) -> None:
    """Logits, embeddings and every captured layer input, for one query and for batches."""
    gnn = model(world, seed=lo + hi, bins=bins, prior=prior)
    subgraphs = world.prepared.subgraphs[lo:hi]
    batch = tensorize(subgraphs, world.rows[lo:hi])
    batch.prior = torch.linspace(-2.0, 2.0, hi - lo) if prior else None
    capture = {t: torch.tensor(r) for t, (_, r) in hop1_rows(subgraphs).items()}
    fused = FusedForward(gnn)
    with torch.inference_mode():
        want = fused.run(batch, capture=capture)
        got = NumpyForward(fused).run(batch, capture)
        plain = NumpyForward(fused).run(batch)
    assert got.logits.shape == (hi - lo,)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.embedding, want.embedding, rtol=1e-5, atol=1e-5)
    assert set(got.captured) == set(capture)
    for t in capture:
        torch.testing.assert_close(got.captured[t], want.captured[t], rtol=1e-5, atol=1e-5)
    # capture reads states; it changes nothing
    torch.testing.assert_close(plain.logits, got.logits, rtol=0, atol=0)


def test_a_batch_without_edges_gets_the_root_terms(world: World) -> None:
    """Queries whose entities were never seen: no messages, but every relation's root term."""
    gnn = model(world, seed=3, bins=4, prior=False)
    g = world.prepared.subgraphs[0]
    lonely = type(g)(t=g.t, node_type=[0], node_id=["q"], node_attr=[g.node_attr[0]], node_hop=[0])
    batch = tensorize([lonely, lonely], world.rows[:2])
    assert all(ei.shape[1] == 0 for ei in batch.edge_index.values())
    fused = FusedForward(gnn)
    with torch.inference_mode():
        torch.testing.assert_close(
            NumpyForward(fused).run(batch).logits, fused.run(batch).logits, rtol=1e-5, atol=1e-5
        )


def test_needed_rows_keep_captured_states_up_to_the_last_layer() -> None:
    # 0 ← 1 ← 2 ← 3 and 5 ← 4; messages flow src → dst. Capturing row 5 reads its state
    # after layers 0 and 1 (the inputs of layers 1 and 2), not after the last one; its state
    # after layer 1 reads row 4's after layer 0.
    src, dst = np.array([1, 2, 3, 4]), np.array([0, 1, 2, 5])
    need = _needed_rows(3, 6, np.array([0]), src, dst, np.array([5]))
    assert [np.flatnonzero(m).tolist() for m in need] == [[0, 1, 2, 4, 5], [0, 1, 5], [0]]
    plain = _needed_rows(3, 6, np.array([0]), src, dst, None)
    assert [np.flatnonzero(m).tolist() for m in plain] == [[0, 1, 2], [0, 1], [0]]


def test_the_engine_scores_with_numpy_on_one_cpu_thread_and_agrees_with_torch(world: World) -> None:
    gnn = model(world, seed=5, bins=4, prior=False)
    x, y = np.asarray(world.rows), np.asarray(world.y)
    bundle = ModelBundle(
        gnn, TreeBaseline(max_iter=10).fit(x, y), {"version": "gnn-np", "fanouts": list(FANOUTS)}
    )
    engine = ScoringEngine(bundle, world.graph, world.features)
    assert isinstance(engine.numpy_pass, NumpyForward)
    calls = []
    numpy_run = engine.numpy_pass.run
    engine.numpy_pass.run = lambda *a, **k: calls.append(1) or numpy_run(*a, **k)  # type: ignore[method-assign]
    payments = world.payments[:12]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as a serving process runs
        served, _ = engine.infer(payments, "full")
        assert len(calls) == 1
        torch.set_num_threads(2)  # torch has threads numpy's pass would not use: torch's pass
        on_torch, _ = engine.infer(payments, "full")
        assert len(calls) == 1
    finally:
        torch.set_num_threads(before)
    for a, b in zip(served, on_torch, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.embedding is not None and b.embedding is not None
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-5, atol=1e-5)


def test_math_threads_cap_torch_and_the_blas_behind_numpy() -> None:
    before_torch = torch.get_num_threads()
    controller = ThreadpoolController()
    before = controller.select(user_api="blas").info()
    try:
        set_math_threads(1)
        assert torch.get_num_threads() == 1
        blas = controller.select(user_api="blas").info()
        assert blas and all(lib["num_threads"] == 1 for lib in blas)
    finally:
        torch.set_num_threads(before_torch)
        for lib in before:
            controller.select(user_api="blas", prefix=lib["prefix"]).limit(
                limits=lib["num_threads"]
            )
