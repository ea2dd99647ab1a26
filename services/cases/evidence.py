"""The evidence pack of a case: precedents, the neighbours that drove the score, reason codes
and policy hits, and a narrative grounded in them.

The narrative is written from a template over the same evidence the page shows, so every
claim in it can be checked on the page: each precedent it mentions is cited by case id, in
square brackets (``[case-tx-123]``), and each driver by its type and masked id. Nothing here
calls a model or a network service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.cases.model import Case

ENTITY_TYPES = ("account", "card", "device", "ip", "merchant")
"""Node types an analyst can act on; transactions are shown through their entities."""


@dataclass(frozen=True)
class Precedent:
    """A past resolved case similar to this one."""

    case: Case
    distance: float
    shared_entities: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case.case_id,
            "status": self.case.status,
            "distance": round(self.distance, 4),
            "shared_entities": self.shared_entities,
            "score": self.case.score,
            "created_at": self.case.created_at,
            "scenario": self.case.scenario,
        }


LINK_KINDS = ("account_id", "card_id", "device_id", "ip")
"""Entities that tie two payments to one actor; a merchant is shared by too many honest ones."""
POOL = 5
"""Precedents are re-ranked among ``POOL × k`` nearest neighbours."""
LINK_BONUS = 0.05
"""Cosine similarity a precedent gains per linking entity it shares with the case."""


def shared_kinds(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Entity kinds (``account``, ``card``, …) with the same id in both entity maps."""
    return [k.removesuffix("_id") for k, v in a.items() if v and b.get(k) == v]


def rerank(
    hits: Sequence[tuple[str, float]], links: dict[str, int], k: int
) -> list[tuple[str, float]]:
    """The ``k`` best of ``hits`` (case id, cosine distance) once each gains
    :data:`LINK_BONUS` per linking entity it shares with the case (``links``): among cases
    that look alike, the ones tied to the same account, card, device or IP come first. On the
    synthetic data this lifts precision@10 from 0.79 to 0.81 (``bench/retrieval.py``)."""
    ranked = sorted(hits, key=lambda h: (h[1] - LINK_BONUS * links.get(h[0], 0), h[0]))
    return ranked[:k]


def precedent_mix(precedents: Sequence[Precedent]) -> dict[str, int]:
    """How the similar past cases ended."""
    mix = {"fraud": 0, "legit": 0}
    for p in precedents:
        if p.case.status in mix:
            mix[p.case.status] += 1
    return mix


def drivers(explanation: dict[str, Any], top: int = 8) -> list[dict[str, Any]]:
    """The entities (not transactions) whose removal changes the logit most, most first."""
    nodes = [
        n
        for n in explanation.get("nodes", [])
        if n.get("type") in ENTITY_TYPES and n.get("hop", 0) > 0
    ]
    nodes.sort(key=lambda n: -abs(float(n.get("contribution") or 0.0)))
    return nodes[:top]


def narrative(
    case: Case,
    precedents: Sequence[Precedent],
    top_drivers: Sequence[dict[str, Any]],
    policy_hits: Sequence[str],
    mask: Callable[[str, str], str],
) -> str:
    """A few plain sentences over the evidence; ``mask(kind, value)`` hides PII as the page
    does."""
    parts = [
        f"Payment {case.transaction_id} of {case.amount:,.2f} {case.currency} scored "
        f"{case.score:.2f} and was sent to {case.action} by {case.model_version} "
        f"({case.served_by})."
    ]
    if case.reasons:
        parts.append("Reasons: " + ", ".join(r.replace("_", " ") for r in case.reasons) + ".")
    raising = [d for d in top_drivers if float(d.get("contribution") or 0.0) >= 0.01][:3]
    if raising:
        named = [
            f"{d['type']} {mask(d['type'], str(d['id']))} (hop {d['hop']}"
            + (f", labelled {d['label']}" if d.get("label") not in (None, "unknown") else "")
            + f", +{float(d['contribution']):.2f} to the logit)"
            for d in raising
        ]
        parts.append("The score rests most on " + "; ".join(named) + ".")
    elif top_drivers:
        parts.append(
            "No single neighbour raised the score; it comes from the payment's own features."
        )
    mix = precedent_mix(precedents)
    if precedents:
        cited = " ".join(f"[{p.case.case_id}]" for p in precedents[:5])
        shared = sorted({kind for p in precedents for kind in p.shared_entities})
        parts.append(
            f"Of the {len(precedents)} most similar resolved cases, {mix['fraud']} were "
            f"confirmed fraud and {mix['legit']} legitimate {cited}."
            + (f" Some share this payment's {', '.join(shared)}." if shared else "")
        )
    else:
        parts.append("No similar resolved case is on record yet.")
    if policy_hits:
        parts.append("Policy rules that fired: " + ", ".join(policy_hits) + ".")
    return " ".join(parts)
