"""Bring your own data: turn a table of transactions into a riskgraph stream directory.

A :class:`ColumnMapping` says which column holds what (timestamp, transaction id, account,
card, merchant, device, IP, amount, label, label time, scenario); :func:`convert_table`
reads a CSV file (``.csv`` or ``.csv.gz``) and writes ``payments.jsonl`` and ``labels.jsonl``
in event-time order, plus ``ground_truth.csv`` and ``manifest.json``, the same layout
``riskgraph generate`` writes, so ``train``, ``backtest`` and ``produce`` read it unchanged.

Every row becomes a validated :class:`~feature_stream.events.Payment`; a row that fails
validation is written to ``rejected.jsonl`` with the column at fault and the reason, and
counted in the manifest: nothing is dropped silently. Rejected too: a row with fewer or more
cells than the header, a cell that is not UTF-8, a label other than 0 or 1, and a transaction
id seen on an earlier row (the stream keys everything by it). A file that cannot be read as a
table at all (missing, empty, a named column absent) raises :class:`TableError`.

A label's time is the label-time column when the mapping names one, else the payment's time
plus ``label_delay_days`` (labels of card fraud typically arrive days to weeks later). Only
fraud rows get a label event unless ``legit_labels`` is set; ``ground_truth.csv`` has every row.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from feature_stream.events import SCHEMA_VERSION, LabelEvent, Payment


class ColumnMapping(BaseModel):
    """Column names of the source table; ``None`` where the table has no such column.

    ``*_prefix`` is put in front of the raw value to make an id (so a customer id ``42``
    can be both account ``acct-42`` and card ``card-42``)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: str
    transaction_id: str
    account: str
    card: str
    merchant: str
    amount: str
    device: str | None = None
    ip: str | None = None
    label: str | None = None
    label_time: str | None = None
    scenario: str | None = None
    account_prefix: str = "acct-"
    card_prefix: str = "card-"
    merchant_prefix: str = "mer-"
    device_prefix: str = "dev-"
    transaction_prefix: str = "tx-"
    legit_labels: bool = Field(
        False,
        description="Also write a label event for each legitimate row (chargebacks "
        "only ever report fraud; analyst verdicts may report both)",
    )
    currency: str = "EUR"
    channel: str = "card_present"
    timezone_naive_is_utc: bool = Field(
        True, description="Read timestamps without an offset as UTC"
    )


HANDBOOK = ColumnMapping(
    timestamp="TX_DATETIME",
    transaction_id="TRANSACTION_ID",
    account="CUSTOMER_ID",
    card="CUSTOMER_ID",
    merchant="TERMINAL_ID",
    amount="TX_AMOUNT",
    label="TX_FRAUD",
    scenario="TX_FRAUD_SCENARIO",
    account_prefix="cust-",
    card_prefix="card-",
    merchant_prefix="term-",
)
"""The simulated data of the *Reproducible Machine Learning for Credit Card Fraud Detection*
handbook: a customer is one account with one card, a terminal is a merchant."""

PRESETS: dict[str, ColumnMapping] = {"handbook": HANDBOOK}


class TableError(ValueError):
    """The source cannot be read as a table of transactions; the message says why."""


class _BadCell(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column


def _open(path: Path) -> io.TextIOBase:
    # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's
    # name. surrogateescape: a byte that is not UTF-8 reaches the row, which is rejected.
    opener: Any = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")


def _time(raw: str, naive_utc: bool) -> datetime:
    t = datetime.fromisoformat(raw.strip())
    if t.tzinfo is None:
        if not naive_utc:
            raise ValueError("timestamp has no UTC offset")
        t = t.replace(tzinfo=UTC)
    t.astimezone(UTC)  # OverflowError for a time that has no UTC equivalent
    return t


def _cells(row: dict[str | None, Any]) -> dict[str, str]:
    """The row's cells by column, or :class:`_BadCell` when they do not fit the header."""
    if None in row:  # csv.DictReader keeps cells past the header under None
        raise _BadCell("", f"{len(row[None])} more cell(s) than the header has columns")
    short = [c for c, v in row.items() if v is None]
    if short:
        raise _BadCell(str(short[0]), "missing: the row has fewer cells than the header")
    try:  # a byte that is not UTF-8 reads as a surrogate, which does not encode
        "".join(row.values()).encode("utf-8")  # one C call per row
    except UnicodeEncodeError:
        for column, value in row.items():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _BadCell(str(column), "not valid UTF-8") from None
    return row  # type: ignore[return-value]


def _parse(column: str, parse: Any, raw: str) -> Any:
    """``parse(raw)``, any failure blamed on ``column``."""
    try:
        return parse(raw)
    except (ValueError, OverflowError, TypeError) as exc:
        raise _BadCell(column, f"{raw!r}: {exc}") from exc


def _amount(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _label(raw: str) -> int:
    value = float(raw)
    if value not in (0.0, 1.0):
        raise ValueError("a label is 0 (legitimate) or 1 (fraud)")
    return int(value)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rows(path: Path) -> Iterator[dict[str | None, Any]]:
    with _open(path) as fh:
        yield from csv.DictReader(fh)


def _column_of(m: ColumnMapping, field: str) -> str:
    """The source column behind a payment field (the field's name if none maps to it)."""
    columns = {
        "event_id": m.transaction_id,
        "event_time": m.timestamp,
        "account_id": m.account,
        "card_id": m.card,
        "merchant_id": m.merchant,
        "amount": m.amount,
        "device_id": m.device,
        "ip": m.ip,
    }
    return columns.get(field) or field


def convert_table(
    source: Path,
    mapping: ColumnMapping,
    out_dir: Path,
    label_delay_days: float = 7.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a stream directory from ``source``; returns the manifest it wrote."""
    source, out_dir = Path(source), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = mapping
    named = [m.timestamp, m.transaction_id, m.account, m.card, m.merchant, m.amount]
    named += [c for c in (m.device, m.ip, m.label, m.label_time, m.scenario) if c]
    try:
        with _open(source) as fh:
            header = next(csv.reader(fh), [])
    except OSError as exc:
        raise TableError(f"{source}: cannot be read ({exc.strerror or exc})") from exc
    if not header:
        raise TableError(f"{source}: empty, no header row")
    absent = sorted(set(named) - set(header))
    if absent:
        raise TableError(f"{source}: no column(s) {', '.join(absent)}; the header has {header}")

    payments: list[tuple[datetime, int, str]] = []  # (time, row, JSON line)
    labels: list[tuple[datetime, int, str]] = []
    truth: list[tuple[str, str, str, int, str]] = []
    rejected = 0
    delay = timedelta(days=label_delay_days)
    naive_utc = m.timezone_naive_is_utc
    first_row: dict[str, int] = {}  # transaction id → the row that had it
    with open(out_dir / "rejected.jsonl", "w", encoding="utf-8") as bad:
        for n, raw in enumerate(tqdm(_rows(source), desc="read", unit="row", disable=not progress)):
            try:
                row = _cells(raw)
                when = _parse(m.timestamp, lambda v: _time(v, naive_utc), row[m.timestamp])
                tx = m.transaction_prefix + row[m.transaction_id].strip()
                if tx in first_row:
                    raise _BadCell(m.transaction_id, f"{tx} is on row {first_row[tx]} already")
                body: dict[str, Any] = {
                    "schema_version": SCHEMA_VERSION,
                    "type": "payment",
                    "event_id": tx,
                    "event_time": _iso(when),
                    "account_id": m.account_prefix + row[m.account].strip(),
                    "card_id": m.card_prefix + row[m.card].strip(),
                    "merchant_id": m.merchant_prefix + row[m.merchant].strip(),
                    "amount": _parse(m.amount, _amount, row[m.amount]),
                    "currency": m.currency,
                    "channel": m.channel,
                }
                if m.device and row[m.device].strip():
                    body["device_id"] = m.device_prefix + row[m.device].strip()
                if m.ip and row[m.ip].strip():
                    body["ip"] = row[m.ip].strip()
                try:
                    payment = Payment.model_validate(body)  # the check; ``body`` is written
                except ValidationError as exc:
                    field = str(exc.errors()[0]["loc"][0])
                    raise _BadCell(_column_of(m, field), str(exc)) from exc
                fraud = _parse(m.label, _label, row[m.label]) if m.label else 0
                if m.label_time and row[m.label_time].strip():
                    label_at = _parse(
                        m.label_time, lambda v: _time(v, naive_utc), row[m.label_time]
                    )
                else:
                    try:
                        label_at = when + delay
                    except OverflowError as exc:
                        raise _BadCell(m.timestamp, f"its label time: {exc}") from exc
                label_line = None
                if m.label and (fraud or m.legit_labels):
                    try:
                        label = LabelEvent(
                            event_id=f"lb-{tx}",
                            event_time=label_at,
                            transaction_id=tx,
                            account_id=payment.account_id,
                            is_fraud=bool(fraud),
                            source="chargeback",
                        )
                    except ValidationError as exc:  # e.g. an id too long once prefixed
                        raise _BadCell(m.transaction_id, f"its label: {exc}") from exc
                    ev = label.model_dump(mode="json")
                    ev["event_time"] = _iso(label_at)
                    label_line = json.dumps(ev, separators=(",", ":"))
            except _BadCell as exc:
                reason = {"row": n, "field": exc.column, "reason": str(exc)[:300], "raw": raw}
                bad.write(json.dumps(reason) + "\n")
                rejected += 1
                continue
            first_row[tx] = n
            payments.append((when, n, json.dumps(body, separators=(",", ":"))))
            scenario = row[m.scenario].strip() if m.scenario else ""
            if label_line is not None:
                labels.append((label_at, n, label_line))
            scenario = scenario if fraud else ""
            truth.append((tx, payment.account_id, body["event_time"], fraud, scenario))
    payments.sort(key=lambda r: (r[0], r[1]))
    labels.sort(key=lambda r: (r[0], r[1]))
    for name, lines in (("payments.jsonl", payments), ("labels.jsonl", labels)):
        with open(out_dir / name, "w", encoding="utf-8") as fh:
            for _, _, line in lines:
                fh.write(line + "\n")
    with open(out_dir / "ground_truth.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["transaction_id", "account_id", "event_time", "is_fraud", "scenario"])
        truth.sort(key=lambda t: t[2])
        w.writerows(truth)
    manifest: dict[str, Any] = {
        "source": str(source),
        "mapping": mapping.model_dump(),
        "label_delay_days": label_delay_days,
        "rows": len(payments) + rejected,
        "payments": len(payments),
        "labels": len(labels),
        "fraud": sum(r[3] for r in truth),
        "rejected": rejected,
        "files": {
            "payments.jsonl": {
                "records": len(payments),
                "first_event_time": _iso(payments[0][0]) if payments else None,
                "last_event_time": _iso(payments[-1][0]) if payments else None,
            },
            "labels.jsonl": {"records": len(labels)},
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
