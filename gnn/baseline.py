"""Gradient-boosted trees on the online features: the baseline and the fallback model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike
from sklearn.ensemble import HistGradientBoostingClassifier

from feature_stream.features import FEATURE_NAMES

GRID_COPIES: dict[int, float] = {FEATURE_NAMES.index("amount_log"): 20.0}
"""Columns the tree also sees rounded to a fixed grid (column → steps per unit), after the
online features. The histogram trees bin each column at 255 quantiles, so the sparse tail of
a column shares one bin: the top 0.4 % of amounts (about 150 to 2,000 on the handbook data)
cannot be split at an absolute amount such as a rule's 220. ``log1p(amount)`` on a grid of
1/20 has about 160 values, each its own bin: a split can fall on any 5 % step of the amount."""


class FlatTrees:
    """A fitted binary :class:`HistGradientBoostingClassifier`'s trees as flat arrays, walked
    for a whole batch at once with numpy.

    scikit-learn's own ``predict_proba`` costs ~1.5 ms whatever the batch size (input checks,
    one call per tree) and over 10 ms when its OpenMP threads fight the server's threads on
    two cores; this walks every tree for every row in ~0.2 ms for one row, ~0.5 ms for eight.
    Numerical features only (no categorical splits), which is what the online features are.
    """

    def __init__(self, model: HistGradientBoostingClassifier) -> None:
        nodes = [trees[0].nodes for trees in model._predictors]
        sizes = [len(n) for n in nodes]
        self.roots = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        flat = np.concatenate(nodes)
        if flat["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        tree_of = np.repeat(np.arange(len(nodes)), sizes)
        leaf = flat["is_leaf"].astype(bool)
        left = flat["left"].astype(np.int64) + self.roots[tree_of]
        right = flat["right"].astype(np.int64) + self.roots[tree_of]
        here = np.flatnonzero(leaf)
        left[leaf], right[leaf] = here, here  # a leaf is its own child: walks end there
        self.child = np.stack([left, right], axis=1)
        self.feature = np.where(leaf, 0, flat["feature_idx"]).astype(np.int64)
        self.threshold = flat["num_threshold"]
        self.missing_left = flat["missing_go_to_left"].astype(bool)
        self.value = flat["value"]
        self.bias = float(np.asarray(model._baseline_prediction).ravel()[0])

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) ``[N]`` for rows ``x [N, F]``."""
        n, width = x.shape
        cur = np.tile(self.roots, (n, 1))
        row_base = (np.arange(n, dtype=np.int64) * width)[:, None]
        flat_x = x.ravel()
        while True:
            v = flat_x[row_base + self.feature[cur]]
            left = np.where(np.isnan(v), self.missing_left[cur], v <= self.threshold[cur])
            nxt = self.child[cur, (~left).astype(np.int64)]
            if np.array_equal(nxt, cur):
                break
            cur = nxt
        return self.value[cur].sum(axis=1) + self.bias


class TreeBaseline:
    """Histogram gradient boosting over :data:`feature_stream.features.FEATURE_NAMES`.

    Deterministic for a seed. Small batches (the fallback rung, shadow scores) are scored
    by :class:`FlatTrees` in well under a millisecond, which is why it is the fallback when
    the GNN cannot meet a deadline; large ones (training, evaluation) by scikit-learn.
    """

    SMALL_BATCH = 16

    def __init__(
        self,
        seed: int = 0,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        grid: Mapping[int, float] | None = None,
    ) -> None:
        self.grid = dict(GRID_COPIES if grid is None else grid)
        self.model = HistGradientBoostingClassifier(
            max_iter=max_iter,
            learning_rate=learning_rate,
            max_leaf_nodes=31,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=30,
            random_state=seed,
        )
        self._flat: FlatTrees | None = None

    def inputs(self, x: ArrayLike) -> np.ndarray:
        """The trees' input rows ``[N, F + len(grid)]``: ``x`` and then its grid copies."""
        rows = np.asarray(x, dtype=np.float64)
        grid = getattr(self, "grid", {})  # an artifact pickled before grid copies has none
        if not grid or rows.ndim != 2:
            return rows  # scikit-learn names a bad shape
        return np.column_stack([rows, *(np.round(rows[:, c] * k) / k for c, k in grid.items())])

    def fit(self, x: ArrayLike, y: ArrayLike) -> TreeBaseline:
        self.model.fit(self.inputs(x), np.asarray(y, dtype=int))
        return self

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Fraud probabilities ``[N]`` in [0, 1]."""
        rows = self.inputs(x)
        flat = self._small(rows)
        if flat is None:
            return self.model.predict_proba(rows)[:, 1]  # its checks name a bad shape
        return 1.0 / (1.0 + np.exp(-flat.raw(rows)))

    def raw(self, x: ArrayLike) -> np.ndarray:
        """Log-odds ``[N]`` (what :meth:`predict` passes through the sigmoid)."""
        rows = self.inputs(x)
        flat = self._small(rows)
        if flat is None:
            return np.asarray(self.model.decision_function(rows), dtype=np.float64)
        return flat.raw(rows)

    def _small(self, rows: np.ndarray) -> FlatTrees | None:
        """The flat trees if ``rows`` (already :meth:`inputs`) is a small batch of the right
        width, else ``None``."""
        if not (rows.ndim == 2 and len(rows) <= self.SMALL_BATCH):
            return None
        if rows.shape[1] != self.model.n_features_in_:
            return None
        flat = getattr(self, "_flat", None)
        if flat is None:
            flat = self._flat = FlatTrees(self.model)
        return flat

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_flat", None)  # derived from the model: rebuilt on first use
        return state
