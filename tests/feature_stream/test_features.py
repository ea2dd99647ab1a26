"""Online features: the merchant's fraud streak follows a run of fraud-labelled payments."""

from __future__ import annotations

import pytest

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES, SETTLE_DAYS, compute_features
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor
from tests.factories import label, payment

DAY = 86_400.0
STREAK = FEATURE_NAMES.index("merchant_fraud_streak_days")


def merchant_history(fraud_from_day: int | None, days: int = 40) -> Ingestor:
    """One payment a day at noon at merchant ``m`` (each from its own card); from
    ``fraud_from_day`` on every one is fraud, its label arriving ``SETTLE_DAYS`` later."""
    ing = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink())
    for d in range(days):
        p = payment(f"p{d}", (d + 0.5) * DAY, account=f"a{d}", card=f"c{d}", merchant="m")
        assert ing.apply(p)
        if fraud_from_day is not None and d >= fraud_from_day:
            assert ing.apply(label(f"l{d}", (d + 0.5 + SETTLE_DAYS) * DAY, txn=p))
    return ing


def streak_at(ing: Ingestor, day: float) -> float:
    q: Payment = payment("q", day * DAY, account="qa", card="qc", merchant="m")
    return compute_features(q, ing.features).values[STREAK]


@pytest.mark.parametrize(
    ("since_first", "expected"),
    [(-0.5, 0.0), (0.25, 1.0), (2.25, 3.0), (5.25, 5.0), (12.25, 10.0), (30.0, 28.0)],
)
def test_the_streak_grows_with_the_run_of_fraud(since_first: float, expected: float) -> None:
    """``since_first``: days from the first fraudulent payment to the query's settled time
    (query time minus SETTLE_DAYS). The streak is the longest window of the grid that holds
    only fraud-labelled payments: shorter than ``since_first`` + 1 (the last legitimate
    payment is a day before the first fraud)."""
    ing = merchant_history(fraud_from_day=5, days=60)
    day = 5.5 + since_first + SETTLE_DAYS
    assert streak_at(ing, day) == expected


def test_a_clean_merchant_and_a_past_run_have_no_streak() -> None:
    assert streak_at(merchant_history(None), 35.0) == 0.0
    past = merchant_history(fraud_from_day=5, days=12)  # fraud on days 5..11, then nothing
    for d in range(12, 40):
        assert past.apply(payment(f"x{d}", (d + 0.5) * DAY, account=f"x{d}", merchant="m"))
    assert streak_at(past, 35.0) == 0.0


def test_labels_not_yet_arrived_do_not_count() -> None:
    """A query before the first label's arrival sees no streak, whatever comes later."""
    ing = merchant_history(fraud_from_day=5, days=40)
    assert streak_at(ing, 5.5 + SETTLE_DAYS - 0.01) == 0.0
    assert streak_at(ing, 5.5 + SETTLE_DAYS + 0.01) > 0.0
