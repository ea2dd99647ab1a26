"""Point-in-time correctness: what a payment at ``t`` sees depends only on events before ``t``.

Random streams of payments, logins, social links and labels over a handful of entities, with
many ties and arbitrary ingestion order, are ingested in full; the answers for a query at ``t``
are then compared with a brute-force reading of the stream and with stores that never saw
anything at or after ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES, FeatureVector, compute_features
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_schema import TXN
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, LABEL_UNKNOWN
from feature_stream.ingest import Ingestor
from tests.factories import label, link, login, payment, ts

AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent

ACCOUNTS = ("a0", "a1", "a2", "a3")
CARDS = ("c0", "c1", "c2")
MERCHANTS = ("m0", "m1")
DEVICES = ("d0", "d1", "d2")
IPS = ("10.0.0.1", "10.0.0.2")
# Offsets from T0 in seconds, clustered around the 1 min, 5 min, 1 h and 24 h window edges.
TIMES = (0, 30, 59, 60, 90, 120, 300, 360, 3599, 3600, 3660, 7200, 86399, 86400, 86460, 90000)
LABEL_DELAYS = (0, 1, 60, 3600, 86400)
FANOUTS = (15, 10)


@dataclass
class Scenario:
    events: list[AnyEvent]  # unique events
    order: list[AnyEvent]  # ingestion order: a permutation of events plus replays
    query: Payment

    @property
    def t(self) -> float:
        return self.query.event_time.timestamp()


def maybe(values: tuple[str, ...]) -> st.SearchStrategy[str | None]:
    return st.none() | st.sampled_from(values)


@st.composite
def payments(draw: st.DrawFn, event_id: str) -> Payment:
    return payment(
        event_id,
        draw(st.sampled_from(TIMES)),
        account=draw(st.sampled_from(ACCOUNTS)),
        card=draw(st.sampled_from(CARDS)),
        merchant=draw(st.sampled_from(MERCHANTS)),
        amount=draw(st.sampled_from((1.0, 9.99, 120.5, 2500.0))),
        device=draw(maybe(DEVICES)),
        ip=draw(maybe(IPS)),
        channel=draw(st.sampled_from(("card_present", "ecommerce", "p2p"))),
    )


@st.composite
def streams(draw: st.DrawFn) -> list[AnyEvent]:
    pays = [draw(payments(f"p{i}")) for i in range(draw(st.integers(1, 12)))]
    events: list[AnyEvent] = list(pays)
    for i in range(draw(st.integers(0, 6))):
        events.append(
            login(
                f"l{i}",
                draw(st.sampled_from(TIMES)),
                account=draw(st.sampled_from(ACCOUNTS)),
                device=draw(st.sampled_from(DEVICES)),
                ip=draw(maybe(IPS)),
            )
        )
    for i in range(draw(st.integers(0, 5))):
        src, dst = draw(st.permutations(ACCOUNTS))[:2]
        kind = draw(st.sampled_from(("p2p_transfer", "contact", "shared_phone")))
        events.append(
            link(
                f"s{i}",
                draw(st.sampled_from(TIMES)),
                src=src,
                dst=dst,
                kind=kind,
                amount=50.0 if kind == "p2p_transfer" else None,
            )
        )
    for i in range(draw(st.integers(0, 6))):
        txn = draw(st.sampled_from(pays))
        delay = draw(st.sampled_from(LABEL_DELAYS))
        t = txn.event_time.timestamp() - ts(0) + delay
        events.append(label(f"lb{i}", t, txn=txn, fraud=draw(st.booleans())))
    return events


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    events = draw(streams())
    replays = draw(st.lists(st.sampled_from(events), max_size=4))
    order = draw(st.permutations(events + replays))
    pays = [e for e in events if isinstance(e, Payment)]
    query = draw(st.sampled_from(pays) | payments("query"))
    return Scenario(events, order, query)


def ingest(events: list[AnyEvent]) -> Ingestor:
    ingestor = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink())
    for e in events:
        ingestor.apply(e)
    return ingestor


def brute_label(events: list[AnyEvent], txn_id: str, t: float) -> set[int]:
    """Labels acceptable for ``txn_id`` as known strictly before ``t`` (several on a tie)."""
    known = [
        e
        for e in events
        if isinstance(e, LabelEvent) and e.transaction_id == txn_id and e.event_time.timestamp() < t
    ]
    if not known:
        return {LABEL_UNKNOWN}
    latest = max(e.event_time.timestamp() for e in known)
    return {
        LABEL_FRAUD if e.is_fraud else LABEL_LEGIT
        for e in known
        if e.event_time.timestamp() == latest
    }


def assert_same_features(a: FeatureVector, b: FeatureVector) -> None:
    assert a.as_of == b.as_of
    for name, x, y in zip(FEATURE_NAMES, a.values, b.values, strict=True):
        assert x == pytest.approx(y, rel=1e-12, abs=1e-12), name


@settings(max_examples=100, deadline=None)
@given(s=scenarios())
def test_sample_uses_only_the_past(s: Scenario) -> None:
    g = ingest(s.order).graph
    (sub,) = g.sample([s.query], FANOUTS)
    own = [e for d, e in zip(sub.dst, sub.edge_ts, strict=True) if d == 0]
    stored = [e for d, e in zip(sub.dst, sub.edge_ts, strict=True) if d != 0]
    assert own == [s.t] * len(own)
    assert all(e < s.t for e in stored)
    assert sub.max_time_used < s.t
    txn_nodes = [i for i in range(1, sub.num_nodes) if sub.node_type[i] == TXN]
    assert all(sub.node_attr[i][1] > 0 for i in txn_nodes)  # every sampled payment is older
    shown = {sub.node_id[i]: sub.node_attr[i][2] for i in txn_nodes}
    expected = {tid: brute_label(s.events, tid, s.t) for tid in shown}
    assert all(shown[tid] in expected[tid] for tid in shown), (shown, expected)


@settings(max_examples=100, deadline=None)
@given(s=scenarios())
def test_future_events_do_not_change_the_answer(s: Scenario) -> None:
    everything = ingest(s.order)
    past_only = ingest([e for e in s.order if e.event_time.timestamp() < s.t])
    full = compute_features(s.query, everything.features)
    past = compute_features(s.query, past_only.features)
    assert full.as_of < s.t
    assert_same_features(full, past)
    assert everything.graph.sample([s.query], FANOUTS) == past_only.graph.sample([s.query], FANOUTS)


def window_events(events: list[AnyEvent], t: float, w: float) -> list[Payment]:
    return [e for e in events if isinstance(e, Payment) and t - w <= e.event_time.timestamp() < t]


@settings(max_examples=100, deadline=None)
@given(s=scenarios())
def test_velocity_features_match_brute_force(s: Scenario) -> None:
    f = compute_features(s.query, ingest(s.order).features).as_dict()
    q, t = s.query, s.t

    def count(w: float, **match: str | None) -> float:
        return float(
            sum(
                all(getattr(p, k) == v for k, v in match.items())
                for p in window_events(s.events, t, w)
            )
        )

    assert f["card_count_1m"] == count(60, card_id=q.card_id)
    assert f["card_count_1h"] == count(3600, card_id=q.card_id)
    assert f["card_count_24h"] == count(86400, card_id=q.card_id)
    assert f["account_count_1h"] == count(3600, account_id=q.account_id)
    assert f["account_count_24h"] == count(86400, account_id=q.account_id)
    assert f["card_sum_24h_log"] == pytest.approx(
        math.log1p(
            sum(p.amount for p in window_events(s.events, t, 86400) if p.card_id == q.card_id)
        )
    )
    assert f["device_count_24h"] == (count(86400, device_id=q.device_id) if q.device_id else 0.0)
    on_device = [
        e
        for e in s.events
        if isinstance(e, Payment | DeviceEvent)
        and e.device_id == q.device_id
        and t - 86400 <= e.event_time.timestamp() < t
    ]
    assert f["device_distinct_accounts_24h"] == float(
        len({e.account_id for e in on_device}) if q.device_id else 0
    )
    p2p = [
        e
        for e in s.events
        if isinstance(e, SocialEvent)
        and e.kind == "p2p_transfer"
        and e.dst_account_id == q.account_id
        and t - 86400 <= e.event_time.timestamp() < t
    ]
    assert f["p2p_in_count_24h"] == float(len(p2p))
    before = [e for e in s.events if isinstance(e, Payment) and e.event_time.timestamp() < t]
    assert f["first_seen_merchant_for_card"] == float(
        not any(p.card_id == q.card_id and p.merchant_id == q.merchant_id for p in before)
    )


RANK = {"payment": 0, "device": 1, "social": 2, "label": 3}


@settings(max_examples=75, deadline=None)
@given(s=scenarios())
def test_shuffled_ingestion_gives_the_in_order_features(s: Scenario) -> None:
    in_order = sorted(s.events, key=lambda e: (e.event_time.timestamp(), RANK[e.type]))
    a = ingest(in_order).features
    b = ingest(s.order).features  # labels may come before their payments
    pays = [e for e in s.events if isinstance(e, Payment)]
    for p in [*pays, s.query]:
        assert_same_features(compute_features(p, a), compute_features(p, b))
    t = s.t
    fraud_on_card = [
        e
        for e in s.events
        if isinstance(e, LabelEvent)
        and e.is_fraud
        and t - 30 * 86400 <= e.event_time.timestamp() < t
        and next(p for p in pays if p.event_id == e.transaction_id).card_id == s.query.card_id
    ]
    assert compute_features(s.query, a).as_dict()["fraud_labels_card_30d"] == len(fraud_on_card)
