"""GNN fitting without a validation window, with weight averaging (handbook protocol) and over
the tree baseline's out-of-fold log-odds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn.artifact import ModelBundle
from gnn.baseline import TreeBaseline
from gnn.engine import ScoringEngine
from gnn.tensorize import tensorize
from gnn.train import TrainConfig, _fit_gnn, _out_of_fold, _set_priors, load_history
from tests.factories import payment
from tests.gnn.conftest import FANOUTS, World


def batches(world: World, size: int = 32) -> list:
    out = []
    for i in range(0, len(world.payments), size):
        batch = tensorize(world.prepared.subgraphs[i : i + size], world.rows[i : i + size])
        out.append((batch, torch.tensor(world.y[i : i + size], dtype=torch.float32)))
    return out


def config(**kw: object) -> TrainConfig:
    return TrainConfig(fanouts=FANOUTS, hidden=16, epochs=3, val_days=0, **kw)  # type: ignore[arg-type]


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_without_validation_the_last_epoch_is_kept(world: World) -> None:
    model, curve = _fit_gnn(batches(world), [], config(), progress=False)
    assert [p["epoch"] for p in curve] == [0, 1, 2]
    assert all("val_auprc" not in p for p in curve)
    again, _ = _fit_gnn(batches(world), [], config(average_epochs=1), progress=False)
    for a, b in zip(weights(model), weights(again), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # averaging one epoch: the last


def test_averaged_weights_differ_from_the_last_epochs_and_score(world: World) -> None:
    last, _ = _fit_gnn(batches(world), [], config(), progress=False)
    avg, _ = _fit_gnn(batches(world), [], config(average_epochs=3), progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(weights(last), weights(avg), strict=True))
    s = avg.predict(batches(world, size=len(world.payments))[0][0])
    assert bool(((s >= 0) & (s <= 1)).all())


def test_out_of_fold_priors_never_see_their_own_label(world: World) -> None:
    x, y = np.asarray(world.rows), np.asarray(world.y)
    cfg = config(tree_prior=True, prior_folds=3)
    prior = _out_of_fold(x, y, cfg)
    assert prior.shape == (len(y),)
    fold = np.random.default_rng(cfg.seed).integers(0, 3, len(y))
    i = int(np.flatnonzero(y == 1)[0])
    flipped = y.copy()
    flipped[i] = 0
    again = _out_of_fold(x, flipped, cfg)
    same = fold == fold[i]
    np.testing.assert_array_equal(again[same], prior[same])  # trees that never saw row i
    assert not np.array_equal(again[~same], prior[~same])  # the trees that did see it changed


def test_a_tree_prior_model_learns_a_residual_over_the_trees_log_odds(world: World) -> None:
    x, y = np.asarray(world.rows), np.asarray(world.y)
    tree = TreeBaseline(max_iter=10).fit(x, y)
    train = batches(world)
    _set_priors(train, _out_of_fold(x, y, config(prior_folds=3)))
    model, _ = _fit_gnn(train, [], config(tree_prior=True), progress=False)
    bundle = ModelBundle(model, tree, {"version": "prior-test", "fanouts": list(FANOUTS)})
    batch = bundle.batch(world.prepared.subgraphs, world.rows)
    assert batch.prior is not None
    np.testing.assert_allclose(batch.prior.numpy(), tree.raw(x), rtol=0, atol=1e-5)
    with torch.inference_mode():
        with_prior = model(batch)
        batch.prior = torch.zeros(len(y))
        residual = model(batch)
        batch.prior = None
        with pytest.raises(ValueError, match="log-odds"):
            model(batch)
    torch.testing.assert_close(with_prior - residual, torch.from_numpy(tree.raw(x)).float())
    engine = ScoringEngine(bundle, world.graph, world.features, cache_size=0)
    scored, _ = engine.infer(world.payments, "full")
    np.testing.assert_allclose(
        [s.score for s in scored], torch.sigmoid(with_prior).numpy(), rtol=0, atol=1e-5
    )


def test_history_for_training_keeps_what_a_hubs_early_payments_read(tmp_path: Path) -> None:
    """Training samples each payment at its own time from stores loaded to the end: a hub past
    the degree cap (5,000 edges per node) keeps its early edges for those samples."""
    n = 5_200
    lines = [
        json.dumps(
            payment(
                f"p{k}", 60.0 * k, account=f"a{k % 50}", card=f"c{k % 50}", merchant="hub"
            ).model_dump(mode="json")
        )
        for k in range(n)
    ]
    (tmp_path / "payments.jsonl").write_text("\n".join(lines) + "\n")
    hist = load_history(tmp_path, progress=False)
    early = 60.0 * 300
    (g,) = hist.graph.sample([payment("q", early, account="a1", card="c1", merchant="hub")], (3,))
    hub = g.node_id.index("hub")
    assert g.node_attr[hub][0] == 300.0  # every payment at the hub before the query
    assert g.node_attr[hub][1] == 60.0  # the last one a minute before it
    sampled = {g.node_id[s] for s, d in zip(g.src, g.dst, strict=True) if d == hub}
    assert sampled == {"p297", "p298", "p299"}
