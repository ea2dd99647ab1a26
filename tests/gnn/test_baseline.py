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
    theirs = model.model.predict_proba(model.inputs(x[:n]))[:, 1]
    assert ours.shape == (n,)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_raw_scores_match_every_row(fitted: tuple[TreeBaseline, np.ndarray]) -> None:
    model, x = fitted
    rows = model.inputs(x)
    raw = FlatTrees(model.model).raw(rows)
    np.testing.assert_allclose(raw, model.model.decision_function(rows), rtol=0, atol=1e-12)


def test_large_batches_and_bad_shapes_go_to_scikit_learn(
    fitted: tuple[TreeBaseline, np.ndarray],
) -> None:
    model, x = fitted
    theirs = model.model.predict_proba(model.inputs(x))[:, 1]
    np.testing.assert_allclose(model.predict(x), theirs, atol=1e-12)
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


def test_grid_copy_is_appended_rounded() -> None:
    tree = TreeBaseline(grid={1: 4.0})
    rows = tree.inputs([[9.0, 0.3, 7.0], [9.0, np.nan, 7.0]])
    np.testing.assert_array_equal(rows[0], [9.0, 0.3, 7.0, 0.25])
    assert rows.shape == (2, 4) and np.isnan(rows[1, 3])


def test_grid_copy_finds_a_threshold_in_the_sparse_tail() -> None:
    """Fraud exactly above an absolute amount that only the top 0.2 % of payments reach: the
    quantile bins of the plain column lump that tail together with the legitimate amounts
    just below it; the grid copy separates them."""
    rng = np.random.default_rng(0)
    amount = np.exp(rng.normal(3.0, 0.9, 40_000))
    tail = np.quantile(amount, 0.998)
    y = (amount > tail).astype(int)
    x = np.column_stack([np.log1p(amount), rng.normal(size=len(amount))])
    near = (amount > tail / 1.3) & (amount < tail * 1.3)  # the tail's neighbourhood

    def errors(grid: dict[int, float]) -> int:
        tree = TreeBaseline(max_iter=50, grid=grid).fit(x, y)
        return int(((tree.predict(x[near]) > 0.5) != y[near].astype(bool)).sum())

    with_grid = errors({0: 20.0})
    without = errors({})
    assert with_grid < without
    assert with_grid <= 0.05 * near.sum()
