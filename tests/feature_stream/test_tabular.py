"""Bring-your-own-data: a transaction table becomes a stream directory the pipeline reads."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from feature_stream.event_io import FileEventSource
from feature_stream.events import LabelEvent, Payment, parse_event
from feature_stream.tabular import HANDBOOK, ColumnMapping, convert_table

HEADER = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]
ROWS = [
    ["2", "2018-04-01 00:09:29", "7", "30", "64.49", "569", "0", "1", "2"],
    ["0", "2018-04-01 00:00:31", "5", "31", "57.16", "31", "0", "0", "0"],  # out of order
    ["1", "2018-04-01 00:02:10", "6", "30", "0.0", "130", "0", "0", "0"],  # amount must be > 0
    ["3", "not a time", "6", "30", "12.00", "600", "0", "0", "0"],
    ["4", "2018-04-02 10:00:00", "5", "30", "230.00", "122400", "1", "1", "1"],
]


def _write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_handbook_rows_become_time_ordered_payments_and_delayed_labels(tmp_path: Path) -> None:
    src = _write(tmp_path / "tx.csv.gz", ROWS)
    manifest = convert_table(src, HANDBOOK, tmp_path / "out", label_delay_days=7, progress=False)
    assert (manifest["payments"], manifest["labels"], manifest["rejected"]) == (3, 2, 2)
    assert {n: f["records"] for n, f in manifest["files"].items()} == {
        "payments.jsonl": 3,
        "labels.jsonl": 2,
    }

    events = [parse_event(r.value) for r in FileEventSource(tmp_path / "out")]
    payments = [e for e in events if isinstance(e, Payment)]
    assert [p.event_id for p in payments] == ["tx-0", "tx-2", "tx-4"]
    assert payments[1].account_id == "cust-7" and payments[1].card_id == "card-7"
    assert payments[1].merchant_id == "term-30"
    labels = {e.transaction_id: e for e in events if isinstance(e, LabelEvent)}
    assert set(labels) == {"tx-2", "tx-4"}  # chargebacks report fraud only
    for tx, label in labels.items():
        paid = next(p for p in payments if p.event_id == tx)
        assert label.is_fraud
        assert label.event_time - paid.event_time == timedelta(days=7)

    rejected = [json.loads(line) for line in (tmp_path / "out/rejected.jsonl").open()]
    assert {(r["raw"]["TRANSACTION_ID"], r["field"]) for r in rejected} == {
        ("1", "amount"),
        ("3", ""),
    }
    assert all(r["reason"] for r in rejected)

    with open(tmp_path / "out/ground_truth.csv", newline="") as fh:
        truth = {r["transaction_id"]: (r["is_fraud"], r["scenario"]) for r in csv.DictReader(fh)}
    assert truth == {"tx-0": ("0", ""), "tx-2": ("1", "2"), "tx-4": ("1", "1")}


def test_a_label_time_column_wins_over_the_delay(tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text(
        "ts,id,acct,card,shop,amt,fraud,seen\n"
        "2024-05-01T10:00:00+02:00,a,1,c1,s,10,1,2024-05-03T00:00:00+00:00\n"
        "2024-05-01T11:00:00+02:00,b,1,c1,s,10,1,\n"
    )
    mapping = ColumnMapping(
        timestamp="ts",
        transaction_id="id",
        account="acct",
        card="card",
        merchant="shop",
        amount="amt",
        label="fraud",
        label_time="seen",
    )
    convert_table(src, mapping, tmp_path / "out", label_delay_days=2, progress=False)
    labels = {
        e.transaction_id: e.event_time
        for r in FileEventSource(tmp_path / "out")
        if isinstance(e := parse_event(r.value), LabelEvent)
    }
    assert labels["tx-a"] == datetime.fromisoformat("2024-05-03T00:00:00+00:00")
    assert labels["tx-b"] == datetime.fromisoformat("2024-05-03T09:00:00+00:00")


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "tx.csv.gz", ROWS, header=[h.replace("TX_AMOUNT", "AMT") for h in HEADER]
    )
    with pytest.raises(ValueError, match="TX_AMOUNT"):
        convert_table(src, HANDBOOK, tmp_path / "out", progress=False)
