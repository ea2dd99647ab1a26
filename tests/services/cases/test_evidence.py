"""The evidence pack's pure parts: precedent ranking, outcome mix, drivers and the narrative."""

from __future__ import annotations

from services.cases.evidence import (
    LINK_BONUS,
    Precedent,
    drivers,
    narrative,
    precedent_mix,
    rerank,
    shared_kinds,
)
from services.cases.review import mask
from tests.services.cases.case_store_contract import make_case


def test_a_linked_precedent_overtakes_a_slightly_nearer_one() -> None:
    hits = [("case-a", 0.10), ("case-b", 0.10 + LINK_BONUS / 2), ("case-c", 0.40)]
    assert rerank(hits, {}, 2) == [("case-a", 0.10), ("case-b", 0.10 + LINK_BONUS / 2)]
    assert [h for h, _ in rerank(hits, {"case-b": 1}, 2)] == ["case-b", "case-a"]
    # a link does not pull a far case past a near one
    assert [h for h, _ in rerank(hits, {"case-c": 1}, 2)] == ["case-a", "case-b"]


def test_shared_kinds_compare_like_with_like() -> None:
    a = {"account_id": "x", "card_id": "c1", "device_id": "d1"}
    b = {"account_id": "y", "card_id": "c1", "device_id": "d1", "ip": "x"}
    assert shared_kinds(a, b) == ["card", "device"]


def test_drivers_are_entities_by_influence_and_the_narrative_cites_precedents() -> None:
    explanation = {
        "nodes": [
            {
                "index": 1,
                "type": "transaction",
                "id": "tx-9",
                "hop": 2,
                "label": "fraud",
                "contribution": 3.0,
            },
            {
                "index": 2,
                "type": "device",
                "id": "dev-12345",
                "hop": 1,
                "label": None,
                "contribution": 1.5,
            },
            {
                "index": 3,
                "type": "card",
                "id": "card-777",
                "hop": 1,
                "label": None,
                "contribution": -2.0,
            },
            {
                "index": 4,
                "type": "ip",
                "id": "10.0.0.1",
                "hop": 1,
                "label": None,
                "contribution": 0.1,
            },
        ]
    }
    top = drivers(explanation)
    assert [d["id"] for d in top] == ["card-777", "dev-12345", "10.0.0.1"]
    case = make_case("tx-1", score=0.93, reasons=["score_decline", "card_velocity_1h"])
    fraud = make_case("tx-2", status="fraud")
    legit = make_case("tx-3", status="legit")
    precedents = [Precedent(fraud, 0.1, ["device"]), Precedent(legit, 0.2)]
    assert precedent_mix(precedents) == {"fraud": 1, "legit": 1}
    text = narrative(case, precedents, top, ["score_decline"], mask)
    assert "[case-tx-2]" in text and "[case-tx-3]" in text
    assert "1 were confirmed fraud and 1 legitimate" in text
    assert "device •••2345" in text and "dev-12345" not in text  # masked as the page shows it
    assert "card •••-777" not in text  # only drivers that raised the score are named
    assert "score_decline" in text and "0.93" in text


def test_negligible_drivers_are_not_named() -> None:
    case = make_case("tx-1")
    tiny = [
        {
            "index": 2,
            "type": "device",
            "id": "dev-1",
            "hop": 1,
            "label": None,
            "contribution": 0.004,
        }
    ]
    text = narrative(case, [], tiny, [], mask)
    assert "dev-1" not in text and "•••ev-1" not in text
    assert "No single neighbour raised the score" in text
