"""GNN fitting without a validation window and with weight averaging (handbook protocol)."""

from __future__ import annotations

import torch

from gnn.tensorize import tensorize
from gnn.train import TrainConfig, _fit_gnn
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
