"""The degradation ladder: the rung is a pure function of the budget and the cost estimates."""

from __future__ import annotations

import pytest

from gnn.ladder import LADDER, PRIOR_ITEM_MS, Rung, StageCosts, choose_rung, size_bucket

EST: dict[Rung, float] = {"full": 8.0, "reduced": 4.0, "cached": 2.0, "tree": 0.6, "policy": 0.1}


@pytest.mark.parametrize(
    ("remaining", "margin", "enabled", "expected"),
    [
        (50.0, 1.0, LADDER, "full"),
        (9.0, 1.0, LADDER, "full"),  # exactly fits: estimate + margin == remaining
        (8.99, 1.0, LADDER, "reduced"),
        (5.0, 1.0, LADDER, "reduced"),
        (4.9, 1.0, LADDER, "cached"),
        (2.9, 1.0, LADDER, "tree"),
        (1.6, 1.0, LADDER, "tree"),
        (2.5, 0.0, LADDER, "cached"),
        (1.0, 1.0, LADDER, "policy"),
        (0.0, 1.0, LADDER, "policy"),
        (-3.0, 0.0, LADDER, "policy"),  # budget already spent: still answered, by the floor
        (50.0, 1.0, ("tree", "policy"), "tree"),  # GNN rungs switched off
        (4.9, 1.0, ("full", "reduced", "tree", "policy"), "tree"),  # no cache: skip "cached"
    ],
)
def test_choose_rung(
    remaining: float, margin: float, enabled: tuple[Rung, ...], expected: Rung
) -> None:
    assert choose_rung(remaining, EST, margin, enabled) == expected


def test_a_rung_without_an_estimate_is_never_chosen() -> None:
    assert choose_rung(100.0, {"tree": 0.5}) == "tree"
    assert choose_rung(100.0, {}) == "policy"


@pytest.mark.parametrize(("n", "bucket"), [(1, 0), (2, 1), (3, 1), (4, 2), (255, 7), (256, 8)])
def test_size_bucket(n: int, bucket: int) -> None:
    assert size_bucket(n) == bucket


def test_costs_start_from_priors_and_follow_measurements() -> None:
    costs = StageCosts(alpha=0.5, k=2.0)
    assert costs.item_ms("full", 1) == PRIOR_ITEM_MS["full"]
    costs.observe("full", 1, 6.0)  # first observation: mean 6, deviation 6/4
    assert costs.item_ms("full", 1) == pytest.approx(6.0 + 2 * 1.5)
    costs.observe("full", 1, 6.0)
    assert costs.item_ms("full", 1) == pytest.approx(6.0 + 2 * 0.75)
    # 32 items in 32 ms is 1 ms per item in bucket 5; size 64 borrows it (nearest below)
    costs.observe("full", 32, 32.0)
    assert costs.item_ms("full", 64) == pytest.approx(1.0 + 2 * 0.25)
    assert costs.item_ms("full", 8) == pytest.approx(6.0 + 2 * 0.75)  # bucket 3 borrows 0


def test_estimates_scale_with_batch_size_and_include_the_tail() -> None:
    costs = StageCosts(alpha=0.5, k=0.0)
    costs.observe("tree", 4, 2.0)
    costs.observe_tail(1.0)  # tail mean: prior 0.4 → 0.7
    est = costs.estimates(4)
    assert est["tree"] == pytest.approx(4 * 0.5 + 4 * 0.7)
    assert est["full"] == pytest.approx(4 * PRIOR_ITEM_MS["full"] + 4 * 0.7)


def test_unused_rungs_decay_so_a_slow_spell_does_not_stick() -> None:
    costs = StageCosts(alpha=0.5, k=0.0, decay=0.5)
    costs.observe("full", 1, 100.0)
    for _ in range(10):
        costs.decay_unused(["tree"])
    assert costs.item_ms("full", 1) == pytest.approx(100.0 / 2**10)
    costs.observe("tree", 1, 1.0)
    costs.decay_unused(["tree"])
    assert costs.item_ms("tree", 1) == pytest.approx(1.0)
