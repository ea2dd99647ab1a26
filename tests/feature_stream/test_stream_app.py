"""The stream worker's batch application, in-process (no Kafka needed)."""

from __future__ import annotations

from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.stream_app import apply_batch
from tests.factories import label, payment, ts


def test_a_batch_is_written_once_and_replays_are_counted() -> None:
    graph, features = InMemoryGraphStore(), InMemoryFeatureStore()
    p = payment("p1", 10.0, account="a", card="c", merchant="m", device="d")
    batch = [p, label("l1", 50.0, txn=p)]
    assert apply_batch(graph, features, batch) == (2, 0)
    assert apply_batch(graph, features, batch) == (0, 2)
    assert features.window("fraud:card:c", ts(0.0), ts(100.0)).count == 1


def test_a_label_before_its_payment_still_counts_once_the_payment_arrives() -> None:
    # A backlog released out of order after an outage: the label is consumed first.
    graph, features = InMemoryGraphStore(), InMemoryFeatureStore()
    p = payment("p1", 10.0, account="a", card="c", merchant="m")
    apply_batch(graph, features, [label("l1", 50.0, txn=p)])
    assert features.window("fraud:card:c", ts(0.0), ts(100.0)).count == 0
    apply_batch(graph, features, [p])
    window = features.window("fraud:card:c", ts(0.0), ts(100.0))
    assert (window.count, window.latest) == (1, ts(50.0))  # known from the label's own time
    assert features.window("fraud:card:c", ts(0.0), ts(50.0)).count == 0
    apply_batch(graph, features, [p, label("l1", 50.0, txn=p)])  # replays change nothing
    assert features.window("fraud:acct:a", ts(0.0), ts(100.0)).count == 1


def test_a_kafka_value_that_is_not_utf8_is_rejected_whole_not_altered() -> None:
    import json

    from feature_stream.event_io import InMemoryEventSink, RawRecord
    from feature_stream.events import to_record
    from feature_stream.ingest import Ingestor
    from feature_stream.kafka_io import decode

    good = to_record(payment("p1", 1, account="acc-1"))
    raw = json.dumps(good).replace("acc-1", "caf\u00e9").encode("latin-1")  # é as one byte
    value = decode(raw)
    assert isinstance(value, str) and "caf\\xe9" in value  # the byte kept, escaped
    dead = InMemoryEventSink()
    ingestor = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), dead)
    assert ingestor.parse(RawRecord("payments", value, 7)) is None  # no account "caf\ufffd"
    assert [(d["offset"], d["value"]) for d in dead.records] == [(7, value)]
    assert decode(json.dumps(good).encode()) == good
