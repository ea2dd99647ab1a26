"""Evaluation metrics against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnn.metrics import recall_at_fpr, summary


def brute_recall_at_fpr(y: list[int], s: list[float], fpr: float) -> float:
    """Best recall over every threshold ``thr`` (caught: score > thr) whose false-positive
    share is at most ``fpr``; thresholds between scores behave like the score below them."""
    neg = [x for x, label in zip(s, y, strict=True) if not label]
    pos = [x for x, label in zip(s, y, strict=True) if label]
    best = 0.0
    for thr in [-math.inf, *s]:
        if sum(x > thr for x in neg) <= fpr * len(neg):
            best = max(best, sum(x > thr for x in pos) / len(pos))
    return best


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.booleans(), st.sampled_from((0.0, 0.1, 0.2, 0.5, 0.5, 0.7, 0.9, 1.0))),
        min_size=2,
        max_size=60,
    ).filter(lambda d: any(y for y, _ in d) and not all(y for y, _ in d)),
    fpr=st.sampled_from((0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)),
)
def test_recall_at_fpr_matches_brute_force(data: list[tuple[bool, float]], fpr: float) -> None:
    y = [int(label) for label, _ in data]
    s = [score for _, score in data]
    assert recall_at_fpr(y, s, fpr) == pytest.approx(brute_recall_at_fpr(y, s, fpr))


def test_recall_at_fpr_hand_worked() -> None:
    # 10 negatives at 0..0.9, positives at 0.95, 0.85, 0.05. At 10% FPR one negative (0.9) may
    # pass, so the threshold is 0.8: the positives at 0.95 and 0.85 are caught.
    y = [0] * 10 + [1, 1, 1]
    s = [i / 10 for i in range(10)] + [0.95, 0.85, 0.05]
    assert recall_at_fpr(y, s, 0.1) == pytest.approx(2 / 3)
    assert recall_at_fpr(y, s, 0.0) == pytest.approx(1 / 3)
    assert recall_at_fpr(y, s, 1.0) == 1.0


def test_ties_with_the_threshold_are_not_rewarded() -> None:
    assert recall_at_fpr([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], 0.0) == 0.0


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0, 0], []])
def test_single_class_input_is_an_error(y: list[int]) -> None:
    with pytest.raises(ValueError, match="both positives and negatives"):
        recall_at_fpr(y, [0.5] * len(y), 0.01)


def test_summary_reports_recall_counts_and_ranking_metrics() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    s = np.where(y, rng.random(500) * 0.5 + 0.5, rng.random(500) * 0.6)
    out = summary(y.astype(int), s)
    assert out["positives"] == int(y.sum())
    assert out["count"] == 500
    assert out["recall_at_fpr_1%"] == recall_at_fpr(y, s, 0.01)
    assert out["recall_at_fpr_0.1%"] == recall_at_fpr(y, s, 0.001)
    assert 0.5 < out["roc_auc"] <= 1.0
    assert out["auprc"] > y.mean()
    perfect = summary([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert (perfect["auprc"], perfect["roc_auc"]) == (1.0, 1.0)
