"""The tree baseline: the flat small-batch walk scores exactly as scikit-learn does."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gnn.baseline import FlatTrees, TreeBaseline


@pytest.fixture(scope="module")
def fitted() -> tuple[TreeBaseline, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 12))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the learned side
    y = ((np.nan_to_num(x[:, 0]) + x[:, 1] ** 2 > 1.2) ^ (rng.random(3000) < 0.05)).astype(int)
    return TreeBaseline(max_iter=60).fit(x, y), rng.normal(size=(64, 12))


@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_small_batches_match_scikit_learn(fitted: tuple[TreeBaseline, np.ndarray], n: int) -> None:
    model, x = fitted
    x = x.copy()
    x[::3, 1] = np.nan
    ours = model.predict(x[:n])
    theirs = model.model.predict_proba(x[:n])[:, 1]
    assert ours.shape == (n,)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_raw_scores_match_every_row(fitted: tuple[TreeBaseline, np.ndarray]) -> None:
    model, x = fitted
    raw = FlatTrees(model.model).raw(x)
    np.testing.assert_allclose(raw, model.model.decision_function(x), rtol=0, atol=1e-12)


def test_large_batches_and_bad_shapes_go_to_scikit_learn(
    fitted: tuple[TreeBaseline, np.ndarray],
) -> None:
    model, x = fitted
    np.testing.assert_allclose(model.predict(x), model.model.predict_proba(x)[:, 1], atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        model.predict(x[:2, :5])


def test_pickles_without_the_derived_arrays(fitted: tuple[TreeBaseline, np.ndarray]) -> None:
    model, x = fitted
    model.predict(x[:1])  # builds the flat arrays
    clone = pickle.loads(pickle.dumps(model))
    assert getattr(clone, "_flat", None) is None
    np.testing.assert_allclose(clone.predict(x[:4]), model.predict(x[:4]), atol=0)


def test_raw_is_the_log_odds_of_predict(fitted: tuple[TreeBaseline, np.ndarray]) -> None:
    model, x = fitted
    for rows in (x[:3], x):  # the flat walk and scikit-learn
        p = model.predict(rows)
        np.testing.assert_allclose(model.raw(rows), np.log(p / (1 - p)), rtol=0, atol=1e-9)
