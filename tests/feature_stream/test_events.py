"""Event parsing: every valid record type round-trips; every invalid one names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from feature_stream.events import (
    TOPICS,
    DeviceEvent,
    InvalidEvent,
    LabelEvent,
    Payment,
    SocialEvent,
    parse_event,
    to_record,
    utc,
)

WHEN = "2026-03-02T10:15:30.250Z"


def valid(kind: str) -> dict[str, Any]:
    common = {"event_id": f"{kind}-1", "event_time": WHEN, "type": kind}
    fields: dict[str, dict[str, Any]] = {
        "payment": {
            "account_id": "a1",
            "card_id": "c1",
            "merchant_id": "m1",
            "amount": 12.5,
            "currency": "GBP",
            "channel": "card_present",
            "device_id": "d1",
            "ip": "192.168.0.7",
        },
        "device": {"kind": "enrolment", "account_id": "a1", "device_id": "d1", "ip": "::1"},
        "social": {
            "kind": "p2p_transfer",
            "src_account_id": "a1",
            "dst_account_id": "a2",
            "amount": 30.0,
        },
        "label": {
            "transaction_id": "payment-1",
            "account_id": "a1",
            "is_fraud": True,
            "source": "analyst",
        },
    }
    return {**common, **fields[kind]}


@pytest.mark.parametrize(
    ("kind", "cls", "key"),
    [
        ("payment", Payment, "a1"),
        ("device", DeviceEvent, "a1"),
        ("social", SocialEvent, "a1"),
        ("label", LabelEvent, "a1"),
    ],
)
def test_valid_records_parse_from_dicts_and_json(kind: str, cls: type, key: str) -> None:
    raw = valid(kind)
    event = parse_event(raw)
    assert isinstance(event, cls)
    assert event.type == kind
    assert event.key == key
    assert event.event_time == datetime(2026, 3, 2, 10, 15, 30, 250000, tzinfo=UTC)
    assert event.ts == event.event_time.timestamp()
    assert kind in TOPICS
    from_json = parse_event(json.dumps(raw))
    assert from_json == event
    assert parse_event(to_record(event)) == event
    rec = to_record(event)
    assert drop(rec, "event_time") | {"type": kind} == drop(raw, "event_time") | {
        "schema_version": 1
    }
    assert datetime.fromisoformat(rec["event_time"]) == event.event_time


def test_defaults_are_filled_in() -> None:
    p = parse_event(
        {
            "type": "payment",
            "event_id": "p",
            "event_time": WHEN,
            "account_id": "a",
            "card_id": "c",
            "merchant_id": "m",
            "amount": 1,
        }
    )
    assert isinstance(p, Payment)
    assert (p.currency, p.channel, p.device_id, p.ip, p.schema_version) == (
        "EUR",
        "ecommerce",
        None,
        None,
        1,
    )


def test_offsets_keep_the_instant() -> None:
    raw = valid("device") | {"event_time": "2026-03-02T12:15:30.250+02:00"}
    event = parse_event(raw)
    assert event.event_time.utcoffset() == timedelta(hours=2)
    assert event.ts == datetime(2026, 3, 2, 10, 15, 30, 250000, tzinfo=UTC).timestamp()


def test_ip_addresses_are_normalised() -> None:
    event = parse_event(valid("device") | {"ip": "2001:0db8:0000:0000:0000:0000:0000:0001"})
    assert isinstance(event, DeviceEvent)
    assert event.ip == "2001:db8::1"


def test_utc_is_aware_and_inverts_timestamp() -> None:
    d = utc(1_772_446_530.25)
    assert d.tzinfo is not None
    assert d.utcoffset() == timedelta(0)
    assert d.timestamp() == 1_772_446_530.25
    assert d.astimezone(timezone(timedelta(hours=-5))).timestamp() == 1_772_446_530.25


def drop(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != name}


INVALID: list[tuple[str, Any, str]] = [
    ("negative-amount", valid("payment") | {"amount": -5}, "amount"),
    ("zero-amount", valid("payment") | {"amount": 0}, "amount"),
    ("huge-amount", valid("payment") | {"amount": 1e9}, "amount"),
    ("missing-account", drop(valid("payment"), "account_id"), "account_id"),
    ("missing-card", drop(valid("payment"), "card_id"), "card_id"),
    ("naive-time", valid("payment") | {"event_time": "2026-03-02T10:15:30"}, "event_time"),
    ("garbage-time", valid("device") | {"event_time": "yesterday"}, "event_time"),
    ("bad-ip", valid("payment") | {"ip": "999.1.2.3"}, "ip"),
    ("bad-device-ip", valid("device") | {"ip": "not-an-ip"}, "ip"),
    ("bad-currency", valid("payment") | {"currency": "euro"}, "currency"),
    ("bad-channel", valid("payment") | {"channel": "fax"}, "channel"),
    ("bad-id-chars", valid("payment") | {"account_id": "a b"}, "account_id"),
    ("empty-id", valid("payment") | {"event_id": ""}, "event_id"),
    ("schema-version", valid("label") | {"schema_version": 2}, "schema_version"),
    ("extra-field", valid("payment") | {"colour": "red"}, "colour"),
    ("label-not-bool", valid("label") | {"is_fraud": "maybe"}, "is_fraud"),
    ("social-bad-kind", valid("social") | {"kind": "enemy"}, "kind"),
    ("p2p-without-amount", drop(valid("social"), "amount"), "amount"),
    (
        "same-src-dst",
        valid("social") | {"kind": "contact", "dst_account_id": "a1"},
        "dst_account_id",
    ),
    ("unknown-type", valid("payment") | {"type": "refund"}, "type"),
    ("missing-type", drop(valid("payment"), "type"), "type"),
]


@pytest.mark.parametrize(
    ("raw", "field"), [(r, f) for _, r, f in INVALID], ids=[name for name, _, _ in INVALID]
)
def test_invalid_records_name_the_field_at_fault(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    assert info.value.field == field
    assert info.value.reason
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("raw", "field"), [(r, f) for _, r, f in INVALID[:6]], ids=[name for name, _, _ in INVALID[:6]]
)
def test_invalid_json_text_names_the_same_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(json.dumps(raw))
    assert info.value.field == field


@pytest.mark.parametrize(
    "raw",
    ["[1, 2]", '"text"', "42", "not json at all", b"\xff\xfe", [1, 2], 42, None, 3.5],
    ids=[
        "json-array",
        "json-string",
        "json-number",
        "not-json",
        "bad-bytes",
        "list",
        "int",
        "none",
        "float",
    ],
)
def test_non_objects_are_rejected_at_the_root(raw: Any) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    assert info.value.field == "$"
    assert info.value.reason
