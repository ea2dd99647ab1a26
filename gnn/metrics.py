"""Evaluation metrics shared by training, the demo and backtests."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score


def recall_at_fpr(y_true: ArrayLike, scores: ArrayLike, fpr: float) -> float:
    """Share of positives caught when the threshold lets through at most ``fpr`` of negatives.

    The threshold is the ``1 - fpr`` quantile of negative scores; positives strictly above it
    count as caught, so ties with the threshold are not rewarded.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if y.all() or not y.any():
        raise ValueError("recall at FPR needs both positives and negatives")
    neg = np.sort(s[~y])
    k = int(np.floor(fpr * len(neg)))  # negatives allowed above the threshold
    threshold = neg[len(neg) - k - 1] if k < len(neg) else -np.inf
    return float((s[y] > threshold).mean())


def summary(y_true: ArrayLike, scores: ArrayLike) -> dict[str, float]:
    """AUPRC (average precision), ROC AUC, recall at 0.1% and 1% FPR, positives, count."""
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    return {
        "auprc": float(average_precision_score(y, s)),
        "roc_auc": float(roc_auc_score(y, s)),
        "recall_at_fpr_0.1%": recall_at_fpr(y, s, 0.001),
        "recall_at_fpr_1%": recall_at_fpr(y, s, 0.01),
        "positives": int(y.sum()),
        "count": len(y),
    }
