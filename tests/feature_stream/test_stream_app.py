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
