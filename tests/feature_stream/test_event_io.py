"""Event sources and sinks: the file source merges topics by time and hides nothing."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_stream.event_io import (
    FileEventSink,
    FileEventSource,
    InMemoryEventSink,
    InMemoryEventSource,
    RawRecord,
)
from feature_stream.events import to_record
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor
from tests.factories import T0, label, login, payment


def write_lines(path: Path, lines: list[Any]) -> None:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )


def test_merges_topics_by_event_time_with_topic_order_on_ties(tmp_path: Path) -> None:
    p1, p2 = payment("p1", 1), payment("p2", 5)
    write_lines(tmp_path / "payments.jsonl", [to_record(p1), to_record(p2)])
    write_lines(
        tmp_path / "device-events.jsonl",
        [to_record(login(f"d{t}", t, account="a", device="d")) for t in (0, 5, 7)],
    )
    write_lines(tmp_path / "labels.jsonl", [to_record(label("lb", 3, txn=p1))])
    out = list(FileEventSource(tmp_path))
    assert [r.value["event_id"] for r in out] == ["d0", "p1", "lb", "p2", "d5", "d7"]
    assert [(r.topic, r.offset) for r in out] == [
        ("device-events", 0),
        ("payments", 0),
        ("labels", 0),
        ("payments", 1),
        ("device-events", 1),
        ("device-events", 2),
    ]


def test_offsets_compare_instants_not_strings(tmp_path: Path) -> None:
    early = to_record(payment("early", 0)) | {"event_time": "2026-03-02T01:30:00+02:00"}
    late = to_record(login("late", 0, account="a", device="d")) | {
        "event_time": "2026-03-01T23:45:00-00:30"
    }
    write_lines(tmp_path / "payments.jsonl", [early])
    write_lines(tmp_path / "device-events.jsonl", [late])
    # early is 23:30Z on the 1st, late is 00:15Z on the 2nd
    assert [r.value["event_id"] for r in FileEventSource(tmp_path)] == ["early", "late"]


def test_non_json_lines_pass_through_and_become_dead_letters(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "payments.jsonl",
        [to_record(payment("p1", 1)), "{truncated", "", "[1, 2]", to_record(payment("p2", 2))],
    )
    out = list(FileEventSource(tmp_path))
    assert [(r.offset, r.value) for r in out if not isinstance(r.value, dict)] == [
        (1, "{truncated"),
        (3, [1, 2]),
    ]
    assert len(out) == 4  # the blank line is not a record
    sink = InMemoryEventSink()
    stats = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), sink).run(out)
    assert sum(stats.accepted.values()) == 2
    assert [(d["topic"], d["offset"], d["value"]) for d in sink.records] == [
        ("payments", 1, "{truncated"),
        ("payments", 3, [1, 2]),
    ]


def test_missing_topics_are_skipped_but_an_empty_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"payments\.jsonl"):
        FileEventSource(tmp_path)
    write_lines(tmp_path / "labels.jsonl", [to_record(label("lb", 1, txn=payment("p", 0)))])
    source = FileEventSource(tmp_path)
    assert source.topics == ("labels",)
    assert [r.topic for r in source] == ["labels"]


aware_times = st.builds(
    lambda s, us, off: (T0 + timedelta(seconds=s, microseconds=us)).astimezone(
        timezone(timedelta(minutes=off))
    ),
    st.integers(0, 200),
    st.sampled_from((0, 1, 500_000)),
    st.sampled_from((-330, 0, 60, 120)),
)


@settings(max_examples=50, deadline=None)
@given(per_topic=st.lists(st.lists(aware_times, max_size=8), min_size=4, max_size=4))
def test_merge_is_ordered_by_instant_and_loses_nothing(per_topic: list[list[datetime]]) -> None:
    topics = ("payments", "device-events", "social-events", "labels")
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        for topic, times in zip(topics, per_topic, strict=True):
            times = sorted(times)  # each file is sorted by event time
            write_lines(
                directory / f"{topic}.jsonl",
                [{"event_time": w.isoformat(), "n": i} for i, w in enumerate(times)],
            )
        out = list(FileEventSource(directory))
    instants = [datetime.fromisoformat(r.value["event_time"]).astimezone(UTC) for r in out]
    assert instants == sorted(instants)
    assert sorted((r.topic, r.offset) for r in out) == sorted(
        (t, i) for t, times in zip(topics, per_topic, strict=True) for i in range(len(times))
    )


def test_in_memory_source_numbers_records() -> None:
    out = list(InMemoryEventSource([("payments", {"a": 1}), ("labels", "x")]))
    assert out == [RawRecord("payments", {"a": 1}, 0), RawRecord("labels", "x", 1)]


def test_file_sink_writes_json_lines_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dead.jsonl"
    sink = FileEventSink(path)
    records = [{"topic": "payments", "offset": 3, "value": "raw"}, {"n": 1.5, "nested": [1, None]}]
    for r in records:
        sink.send(r)
    sink.close()
    sink.close()  # closing twice is harmless
    again = FileEventSink(path)
    again.send({"when": T0})
    again.flush()
    lines = path.read_text().splitlines()
    again.close()
    assert [json.loads(line) for line in lines] == [*records, {"when": str(T0)}]


def test_in_memory_sink_keeps_records() -> None:
    sink = InMemoryEventSink()
    sink.send({"a": 1})
    sink.send({"b": 2})
    sink.close()
    assert sink.records == [{"a": 1}, {"b": 2}]


def test_a_line_that_is_not_utf8_or_has_a_time_out_of_range_is_a_record_not_a_crash(
    tmp_path: Path,
) -> None:
    past_range = to_record(payment("p-far", 3)) | {"event_time": "9999-12-31T23:59:59-14:00"}
    write_lines(tmp_path / "payments.jsonl", [to_record(payment("p1", 1)), past_range])
    with open(tmp_path / "payments.jsonl", "ab") as fh:
        fh.write(b'{"type":"payment","event_id":"caf\xe9"}\n')  # Latin-1, not UTF-8
    out = list(FileEventSource(tmp_path))
    assert sorted(r.offset for r in out) == [0, 1, 2]
    sink = InMemoryEventSink()
    stats = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), sink).run(out)
    assert sum(stats.accepted.values()) == 1
    assert sorted((d["offset"], d["field"]) for d in sink.records) == [(1, "event_time"), (2, "$")]
    (not_utf8,) = [d for d in sink.records if d["offset"] == 2]
    assert "caf\\xe9" in not_utf8["value"]  # the byte is kept, escaped
