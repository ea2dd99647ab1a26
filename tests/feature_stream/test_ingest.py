"""Ingest: bad records become dead letters with their reason, replays are dropped, and every
input record is accounted for."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_stream.event_io import InMemoryEventSink, InMemoryEventSource, RawRecord
from feature_stream.events import TOPICS, Payment, to_record
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES, compute_features
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor
from tests.factories import label, login, payment


def make_ingestor() -> tuple[Ingestor, InMemoryEventSink]:
    sink = InMemoryEventSink()
    return Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), sink), sink


def test_dead_letters_carry_topic_offset_field_reason_and_raw_value() -> None:
    good = to_record(payment("p1", 10, account="a", card="c", merchant="m"))
    bad_amount = good | {"event_id": "p2", "amount": -3}
    not_json = "{oops"
    on_wrong_topic = to_record(login("l1", 11, account="a", device="d"))
    records: list[tuple[str, Any]] = [
        ("payments", good),
        ("payments", bad_amount),
        ("device-events", not_json),
        ("payments", on_wrong_topic),
        ("payments", good),
    ]
    ingestor, sink = make_ingestor()
    stats = ingestor.run(InMemoryEventSource(records))
    assert stats.accepted == Counter({"payment": 1})
    assert stats.duplicates == 1
    assert stats.dead_letters == 3
    assert stats.total == len(records)
    assert stats.seconds > 0
    letters = [{k: d[k] for k in ("topic", "offset", "field", "value")} for d in sink.records]
    assert letters == [
        {"topic": "payments", "offset": 1, "field": "amount", "value": bad_amount},
        {"topic": "device-events", "offset": 2, "field": "$", "value": not_json},
        {"topic": "payments", "offset": 3, "field": "type", "value": on_wrong_topic},
    ]
    assert all(d["reason"] for d in sink.records)
    assert "device-events" in sink.records[2]["reason"]
    assert all(d["rejected_at"].endswith("+00:00") for d in sink.records)
    json.dumps(sink.records)  # dead letters are JSON-ready


def test_accepted_events_reach_both_stores() -> None:
    ingestor, _ = make_ingestor()
    p = payment("p1", 10, account="a", card="c", merchant="m", device="d")
    ingestor.run(
        [
            RawRecord("payments", to_record(p), 0),
            RawRecord("labels", to_record(label("lb", 20, txn=p)), 1),
        ]
    )
    assert ingestor.graph.transaction("p1") is not None
    later = compute_features(
        payment("q", 30, account="a", card="c", merchant="m2"), ingestor.features
    ).as_dict()
    assert later["account_count_1h"] == 1.0
    assert later["fraud_labels_card_30d"] == 1.0
    assert ingestor.features.mark_seen("p1") is False


def test_an_empty_topic_skips_the_topic_check() -> None:
    ingestor, sink = make_ingestor()
    event = ingestor.ingest(RawRecord("", to_record(login("l1", 1, account="a", device="d")), 0))
    assert event is not None
    assert sink.records == []


def test_apply_reports_replays() -> None:
    ingestor, _ = make_ingestor()
    p = payment("p1", 10)
    assert ingestor.apply(p) is True
    assert ingestor.apply(p) is False
    assert ingestor.graph.stats()["edges"] == 3


RAW_KINDS = ("payment", "device", "bad_amount", "bad_time", "not_json", "wrong_topic", "array")


def raw_record(kind: str, i: int) -> tuple[str, Any]:
    if kind == "payment":
        return "payments", to_record(payment(f"p{i}", i, account=f"a{i % 3}"))
    if kind == "device":
        return "device-events", to_record(login(f"d{i}", i, account="a", device=f"dev{i % 2}"))
    if kind == "bad_amount":
        return "payments", to_record(payment(f"x{i}", i)) | {"amount": -1}
    if kind == "bad_time":
        return "labels", {
            "type": "label",
            "event_id": f"l{i}",
            "event_time": "2026-01-01",
            "transaction_id": "t",
            "account_id": "a",
            "is_fraud": True,
        }
    if kind == "not_json":
        return "social-events", f"garbage {i}"
    if kind == "wrong_topic":
        return TOPICS["label"], to_record(payment(f"w{i}", i))
    return "payments", [i]


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(RAW_KINDS), max_size=25),
    replays=st.lists(st.integers(0, 24), max_size=10),
)
def test_nothing_is_lost(kinds: list[str], replays: list[int]) -> None:
    records = [raw_record(k, i) for i, k in enumerate(kinds)]
    records += [records[j] for j in replays if j < len(records)]
    ingestor, sink = make_ingestor()
    stats = ingestor.run(InMemoryEventSource(records))
    n_valid = sum(k in ("payment", "device") for k in kinds)
    assert sum(stats.accepted.values()) == n_valid
    assert stats.accepted["payment"] == kinds.count("payment")
    assert len(sink.records) == stats.dead_letters
    assert sum(stats.accepted.values()) + stats.duplicates + stats.dead_letters == len(records)
    assert sorted(d["offset"] for d in sink.records) == [
        off for off in range(len(records)) if raw_kind_is_bad(kinds, records, off)
    ]
    assert all(d["value"] == records[d["offset"]][1] for d in sink.records)
    assert all(d["topic"] == records[d["offset"]][0] for d in sink.records)


def raw_kind_is_bad(kinds: list[str], records: list[tuple[str, Any]], offset: int) -> bool:
    """Whether the record at ``offset`` (an original or a replay of one) is malformed."""
    origin = records.index(records[offset])
    return kinds[origin] not in ("payment", "device")


class _GraphDownOnce(InMemoryGraphStore):
    """The graph store's first write fails (Neo4j unreachable), later ones succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def _add_payment(self, e: Payment) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("graph store unreachable")
        super()._add_payment(e)


def test_a_failed_sink_write_is_not_marked_seen_so_the_replay_writes_it() -> None:
    graph, features = _GraphDownOnce(), InMemoryFeatureStore()
    ing = Ingestor(graph, features, InMemoryEventSink())
    event = payment("p1", 10.0, account="a", card="c", merchant="m", device="d")
    with pytest.raises(ConnectionError):
        ing.apply(event)
    assert ing.apply(event) is True  # the replay after the outage writes it
    assert ing.apply(event) is False  # and a second replay is a duplicate
    assert graph.transaction("p1") is not None
    assert features.window("card:c", 0.0, 1e12).count == 1
    assert (ing.stats.accepted["payment"], ing.stats.duplicates) == (1, 1)


def test_a_label_ingested_before_its_payment_reaches_the_features() -> None:
    ing, _ = make_ingestor()
    p = payment("p1", 10.0, card="c")
    later = payment("p2", 200.0, card="c")
    assert ing.apply(label("l1", 100.0, txn=p))
    assert ing.apply(p)
    risk = dict(zip(FEATURE_NAMES, compute_features(later, ing.features).values, strict=True))
    assert risk["fraud_labels_card_30d"] > 0


def test_an_event_dated_past_the_clock_by_more_than_a_day_is_a_dead_letter() -> None:
    from feature_stream.ingest import MAX_AHEAD_S
    from tests.factories import ts

    dead = InMemoryEventSink()
    now = ts(0)
    ing = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), dead, clock=lambda: now)
    near = payment("p-near", MAX_AHEAD_S - 60, account="a", card="c", merchant="m")
    far = payment("p-far", MAX_AHEAD_S + 60, account="a", card="c", merchant="m")
    assert ing.ingest(RawRecord("payments", to_record(near), 0)) == near  # clock skew is fine
    assert ing.ingest(RawRecord("payments", to_record(far), 1)) is None
    (letter,) = dead.records
    assert (letter["field"], letter["offset"], letter["value"]) == ("event_time", 1, to_record(far))
    assert "after this host's clock" in letter["reason"]
    assert ing.graph.transaction("p-far") is None
    assert ing.stats.dead_letters == 1
