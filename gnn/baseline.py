"""Gradient-boosted trees on the online features: the baseline and the fallback model."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.ensemble import HistGradientBoostingClassifier


class TreeBaseline:
    """Histogram gradient boosting over :data:`feature_stream.features.FEATURE_NAMES`.

    Deterministic for a seed; scores a row in microseconds, which is why it is the fallback
    when the GNN cannot meet a deadline.
    """

    def __init__(self, seed: int = 0, max_iter: int = 300, learning_rate: float = 0.05) -> None:
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

    def fit(self, x: ArrayLike, y: ArrayLike) -> TreeBaseline:
        self.model.fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=int))
        return self

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Fraud probabilities ``[N]`` in [0, 1]."""
        return self.model.predict_proba(np.asarray(x, dtype=np.float64))[:, 1]
