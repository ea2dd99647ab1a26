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
from feature_stream.tabular import HANDBOOK, ColumnMapping, TableError, convert_table

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
        ("1", "TX_AMOUNT"),  # the source column at fault
        ("3", "TX_DATETIME"),
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
    with pytest.raises(TableError, match="TX_AMOUNT"):
        convert_table(src, HANDBOOK, tmp_path / "out", progress=False)


def test_rows_that_do_not_fit_are_rejected_with_the_column_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    good = ["10", "2018-04-01 00:00:31", "5", "31", "57.16", "31", "0", "0", "0"]

    def row(tx: str, **cells: str) -> list[str]:
        out = [tx, *good[1:]]
        for column, value in cells.items():
            out[HEADER.index(column)] = value
        return out

    lines = [
        ",".join(HEADER),
        ",".join(good),
        ",".join(good[:4]),  # short
        ",".join([*row("12"), "surplus"]),
        ",".join(row("10", TX_AMOUNT="3.00")),  # the id of the first row again
        ",".join(row("13", TX_FRAUD="0.5")),
        ",".join(row("14", TX_FRAUD="-1")),
        ",".join(row("15", TX_AMOUNT="nan")),
        ",".join(row("16", TX_AMOUNT="inf")),
        ",".join(row("17", TX_DATETIME="9999-12-31T23:59:59-14:00")),
        ",".join(row("18", CUSTOMER_ID="caf\xe9")),
        ",".join(row("19", TX_FRAUD="1")),
        ",".join(row("20", TX_DATETIME="9999-12-30 00:00:00", TX_FRAUD="1")),  # label past 9999
        ",".join(row("2" * 126, TX_FRAUD="1")),  # its label id lb-tx-… is too long
    ]
    src = tmp_path / "tx.csv"
    # A byte-order mark first, and row 18 in Latin-1: not UTF-8.
    src.write_bytes(
        b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8").replace(b"caf\xc3\xa9", b"caf\xe9")
    )
    manifest = convert_table(src, HANDBOOK, tmp_path / "out", progress=False)
    rejected = [json.loads(line) for line in (tmp_path / "out/rejected.jsonl").open()]
    assert [(r["row"], r["field"]) for r in rejected] == [
        (1, "TX_AMOUNT"),  # the first column missing from the short row
        (2, ""),
        (3, "TRANSACTION_ID"),
        (4, "TX_FRAUD"),
        (5, "TX_FRAUD"),
        (6, "TX_AMOUNT"),
        (7, "TX_AMOUNT"),
        (8, "TX_DATETIME"),
        (9, "CUSTOMER_ID"),
        (11, "TX_DATETIME"),
        (12, "TRANSACTION_ID"),
    ]
    assert "row 0 already" in rejected[2]["reason"]
    assert "not valid UTF-8" in rejected[8]["reason"]
    assert (manifest["rows"], manifest["payments"], manifest["rejected"], manifest["fraud"]) == (
        13,
        2,
        11,
        1,
    )
    events = [parse_event(r.value) for r in FileEventSource(tmp_path / "out")]
    assert sorted(e.event_id for e in events if isinstance(e, Payment)) == ["tx-10", "tx-19"]
    (first,) = [e for e in events if isinstance(e, Payment) and e.event_id == "tx-10"]
    assert first.amount == 57.16  # the later row with the same id did not replace it


@pytest.mark.parametrize("content", [None, b"", b"\n"], ids=["missing", "empty", "blank"])
def test_a_file_that_is_no_table_is_a_table_error(tmp_path: Path, content: bytes | None) -> None:
    src = tmp_path / "tx.csv"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(TableError, match=r"tx\.csv"):
        convert_table(src, HANDBOOK, tmp_path / "out", progress=False)
