"""The policy rung's score: each feature rule's fraud rate on the training window, shrunk
toward the overall rate, recorded in the artifact and served by the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feature_stream.features import FEATURE_NAMES
from gnn.artifact import ModelBundle, load_artifact, save_artifact
from gnn.baseline import TreeBaseline
from gnn.engine import ScoringEngine
from gnn.model import TemporalHeteroGNN
from gnn.reasons import NO_RULE, RULE_CODES, rule_rates, rule_score
from tests.gnn.conftest import FANOUTS, World

VELOCITY = FEATURE_NAMES.index("card_count_1m")  # rule card_velocity_1m fires at >= 3
NEW_MERCHANT = FEATURE_NAMES.index("first_seen_merchant_for_card")  # fires at >= 1


def planted() -> tuple[np.ndarray, np.ndarray]:
    """200 payments: 10 with card velocity (8 fraud), 40 at a new merchant (1 fraud), 150 with
    no rule firing (1 fraud)."""
    x = np.zeros((200, len(FEATURE_NAMES)))
    y = np.zeros(200, dtype=int)
    x[:10, VELOCITY] = 4
    y[:8] = 1
    x[10:50, NEW_MERCHANT] = 1
    y[10] = 1
    y[50] = 1
    return x, y


def test_a_rules_rate_is_its_fraud_share_where_it_fires() -> None:
    x, y = planted()
    raw = rule_rates(x, y, prior_weight=0.0)
    assert raw["card_velocity_1m"] == pytest.approx(8 / 10)
    assert raw["new_merchant_for_card"] == pytest.approx(1 / 40)
    assert raw[NO_RULE] == pytest.approx(1 / 150)
    assert set(raw) == {*RULE_CODES, NO_RULE}


def test_a_rule_seen_rarely_stays_near_the_overall_rate() -> None:
    x, y = planted()
    overall = 10 / 200
    raw = rule_rates(x, y, prior_weight=0.0)
    shrunk = rule_rates(x, y, prior_weight=50.0)
    assert shrunk["card_velocity_1m"] == pytest.approx((8 + 50 * overall) / (10 + 50))
    # A rule that never fired has only the prior: the overall rate.
    assert shrunk["known_fraud_on_device"] == pytest.approx(overall)
    for code in RULE_CODES:  # shrinking moves every rate toward the overall rate, never past it
        assert abs(shrunk[code] - overall) <= abs(raw[code] - overall) + 1e-12


def test_rates_count_each_kept_legit_payment_for_those_left_out() -> None:
    x, y = planted()
    # Training kept one legit payment in four: each stands for four.
    weighted = rule_rates(x, y, prior_weight=0.0, negative_weight=4.0)
    assert weighted["card_velocity_1m"] == pytest.approx(8 / (8 + 4 * 2))
    assert weighted["new_merchant_for_card"] == pytest.approx(1 / (1 + 4 * 39))
    assert weighted[NO_RULE] == pytest.approx(1 / (1 + 4 * 149))
    shrunk = rule_rates(x, y, prior_weight=50.0, negative_weight=4.0)
    overall = 10 / (10 + 4 * 190)
    assert shrunk["known_fraud_on_device"] == pytest.approx(overall)


def test_rates_need_labelled_rows() -> None:
    with pytest.raises(ValueError, match="rows"):
        rule_rates(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0))
    with pytest.raises(ValueError, match="labels"):
        rule_rates(np.zeros((3, len(FEATURE_NAMES))), np.zeros(2))


def test_the_score_is_the_highest_rate_among_the_rules_that_fire() -> None:
    x, y = planted()
    rates = rule_rates(x, y)
    both = {"card_count_1m": 5.0, "first_seen_merchant_for_card": 1.0}
    assert rule_score(both, rates) == rates["card_velocity_1m"]
    assert (
        rule_score({"first_seen_merchant_for_card": 1.0}, rates) == rates["new_merchant_for_card"]
    )
    assert rule_score({}, rates) == rates[NO_RULE]
    # Without rates (an artifact from before they were recorded): severity / 100.
    assert rule_score(both, None) == pytest.approx(0.70)
    assert rule_score({}, None) == 0.0


def test_the_policy_rung_serves_the_artifacts_rates(world: World, tmp_path: Path) -> None:
    x, y = np.asarray(world.rows), np.asarray(world.y)
    base = ModelBundle(
        TemporalHeteroGNN(len(FEATURE_NAMES), hidden=8, layers=len(FANOUTS) + 1),
        TreeBaseline(max_iter=5).fit(x, y),
        {"version": "gnn-rates-test", "fanouts": list(FANOUTS)},
    )
    rates = rule_rates(np.asarray(world.rows), np.asarray(world.y))
    with_rates = ModelBundle(base.gnn, base.baseline, {**base.manifest, "rule_rates": rates})
    loaded = load_artifact(save_artifact(tmp_path / "m", with_rates, "# card\n"))
    assert loaded.rule_rates == pytest.approx(rates)
    sample = world.payments[-20:]
    scored, _ = ScoringEngine(loaded, world.graph, world.features).infer(sample, "policy")
    assert [s.score for s in scored] == [rule_score(s.features, rates) for s in scored]
    assert len({s.score for s in scored}) > 1  # the sample trips different rules
    old, _ = ScoringEngine(base, world.graph, world.features).infer(sample, "policy")
    assert base.rule_rates is None
    assert [s.score for s in old] == [rule_score(s.features, None) for s in old]
