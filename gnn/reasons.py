"""Reason codes: short, stable explanations of what in a payment's context looks risky.

Each code is a test on the online features (what an analyst can check) or on the sampled
neighbourhood (known fraud nearby); they are ranked by a fixed severity so the top few are
the same for the same evidence.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from feature_stream.features import FEATURE_NAMES
from feature_stream.graph_store import LABEL_FRAUD, Subgraph

# (code, severity, test over the feature dict)
_FEATURE_RULES: list[tuple[str, int, str, float]] = [
    ("device_shared_by_3plus_accounts_5m", 90, "device_distinct_accounts_5m", 3),
    ("known_fraud_on_device", 85, "fraud_labels_device_30d", 1),
    ("known_fraud_on_card", 85, "fraud_labels_card_30d", 1),
    ("known_fraud_on_account", 80, "fraud_labels_account_30d", 1),
    ("known_fraud_on_ip", 75, "fraud_labels_ip_30d", 1),
    ("known_fraud_at_merchant", 60, "fraud_labels_merchant_30d", 1),
    ("card_velocity_1m", 70, "card_count_1m", 3),
    ("card_velocity_1h", 55, "card_count_1h", 8),
    ("ip_shared_by_many_accounts", 50, "ip_distinct_accounts_24h", 5),
    ("amount_far_above_account_mean", 45, "amount_to_account_mean_30d", 5),
    ("inbound_p2p_burst", 45, "p2p_in_count_24h", 3),
    ("new_device_for_account", 35, "first_seen_device_for_account", 1),
    ("new_merchant_for_card", 20, "first_seen_merchant_for_card", 1),
]


def reason_codes(features: dict[str, float], subgraph: Subgraph | None, top: int = 3) -> list[str]:
    """The ``top`` most severe reasons that apply, most severe first."""
    hits: list[tuple[int, str]] = [
        (sev, code)
        for code, sev, name, threshold in _FEATURE_RULES
        if features.get(name, 0.0) >= threshold
    ]
    if subgraph is not None:
        fraud_nearby = sum(
            1
            for i in range(1, subgraph.num_nodes)
            if subgraph.node_type[i] == 0 and subgraph.node_attr[i][2] == LABEL_FRAUD
        )
        if fraud_nearby:
            hits.append((65, "known_fraud_in_neighbourhood"))
    hits.sort(key=lambda h: (-h[0], h[1]))
    return [code for _, code in hits[:top]]


RULE_CODES = tuple(code for code, *_ in _FEATURE_RULES)
"""The codes of the feature rules, most severe first."""

NO_RULE = "no_rule"
"""The key of :func:`rule_rates` for payments on which no rule fires."""

RULE_PRIOR_WEIGHT = 50.0
"""Pseudo-payments at the overall fraud rate added to each rule's count in :func:`rule_rates`:
a rule seen firing a handful of times stays near the overall rate."""


def rule_rates(
    rows: np.ndarray,
    y: np.ndarray,
    prior_weight: float = RULE_PRIOR_WEIGHT,
    negative_weight: float = 1.0,
) -> dict[str, float]:
    """Each feature rule's fraud rate where it fires, from labelled online feature rows
    (``[N, F]`` in :data:`~feature_stream.features.FEATURE_NAMES` order) and their labels:
    ``(frauds + w · overall rate) / (payments + w)`` with ``w = prior_weight`` (the overall
    rate for a rule that never fired when ``w`` is 0). The key :data:`NO_RULE` holds the rate
    on the rows where no rule fires.

    ``negative_weight`` counts each legitimate row that many times: training keeps a share of
    the legitimate payments (``negative_rate``), so it passes ``1 / negative_rate`` to get
    the rates of the population that is served.

    Training stores these in the artifact, so the policy rung's score is a fraud rate measured
    on the model's own training window rather than a severity chosen by hand."""
    x = np.asarray(rows, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != labels.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"need rows [N, F] with N labels and N > 0, got {x.shape} and {labels.shape}"
        )
    if negative_weight <= 0 or prior_weight < 0:
        raise ValueError("need negative_weight > 0 and prior_weight >= 0")
    weight = np.where(labels > 0, 1.0, negative_weight)
    overall = float(labels.sum() / weight.sum())

    def rate(where: np.ndarray) -> float:
        n = weight[where].sum() + prior_weight
        return float((labels[where].sum() + prior_weight * overall) / n) if n else overall

    any_fired = np.zeros(x.shape[0], dtype=bool)
    out: dict[str, float] = {}
    for code, _, name, threshold in _FEATURE_RULES:
        fired = x[:, FEATURE_NAMES.index(name)] >= threshold
        any_fired |= fired
        out[code] = rate(fired)
    out[NO_RULE] = rate(~any_fired)
    return out


def rule_score(features: dict[str, float], rates: Mapping[str, float] | None = None) -> float:
    """A model-free risk score in [0, 1], which the policy-only rung of the degradation ladder
    serves when no model can answer inside the deadline.

    With ``rates`` (:func:`rule_rates`, from the artifact): the highest fraud rate among the
    rules that fire, or the rate where none fires. A payment that trips only weak signals
    (a new merchant for the card, some fraud at the merchant last month) then scores what such
    payments turned out to be, instead of going to review. Without (an artifact trained before
    the rates were recorded): the severity of the worst rule that applies, divided by 100 (0
    when none applies)."""
    fired = [(code, sev) for code, sev, name, t in _FEATURE_RULES if features.get(name, 0.0) >= t]
    if rates is None:
        return max((sev / 100.0 for _, sev in fired), default=0.0)
    return max((rates[code] for code, _ in fired), default=rates[NO_RULE])


REASON_CODES = frozenset([code for code, *_ in _FEATURE_RULES] + ["known_fraud_in_neighbourhood"])
"""Every code :func:`reason_codes` can give; other reasons on a decision come from policy."""
