"""Reason codes: short, stable explanations of what in a payment's context looks risky.

Each code is a test on the online features (what an analyst can check) or on the sampled
neighbourhood (known fraud nearby); they are ranked by a fixed severity so the top few are
the same for the same evidence.
"""

from __future__ import annotations

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


def rule_score(features: dict[str, float]) -> float:
    """A model-free risk score in [0, 1]: the severity of the worst feature rule that applies,
    divided by 100 (0 when none applies). The policy-only rung of the degradation ladder
    serves it when no model can answer inside the deadline."""
    return max(
        (sev / 100.0 for _, sev, name, t in _FEATURE_RULES if features.get(name, 0.0) >= t),
        default=0.0,
    )


REASON_CODES = frozenset([code for code, *_ in _FEATURE_RULES] + ["known_fraud_in_neighbourhood"])
"""Every code :func:`reason_codes` can give; other reasons on a decision come from policy."""
