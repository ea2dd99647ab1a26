"""Turning the simulated event log into JSON lines, fast and byte-for-byte reproducibly.

No pydantic on this path: records are formatted with ``%`` templates whose fields are all
pre-validated (ids match the ``Id`` pattern, amounts are positive, IPs are dotted quads), and
the tests run every line through :func:`feature_stream.events.parse_event`.

Ids are assigned after sorting each file by event time, as ``<prefix><sequence>`` with a fixed
width, so sorting by ``(event_time, event_id)`` and by file position agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feature_stream.generator_fraud import SCENARIOS
from feature_stream.generator_world import CHANNELS, DEVICE_KINDS, SOCIAL_KINDS, World

Table = dict[str, np.ndarray]

# Public unicast first octets; fraud and legitimate addresses come from the same ranges.
_FIRST_OCTETS = np.array(
    [2, 5, 31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93,
     94, 95, 109, 151, 176, 178, 185, 188, 193, 194, 195, 212, 213, 217]
)  # fmt: skip

_PAYMENT = (
    '{"schema_version":1,"type":"payment","event_id":"%s","event_time":"%sZ",'
    '"account_id":"%s","card_id":"%s","merchant_id":"%s","amount":%.2f,"currency":"EUR",'
    '"channel":"%s"%s}'
)
_DEVICE = (
    '{"schema_version":1,"type":"device","event_id":"%s","event_time":"%sZ","kind":"%s",'
    '"account_id":"%s","device_id":"%s"%s}'
)
_SOCIAL = (
    '{"schema_version":1,"type":"social","event_id":"%s","event_time":"%sZ","kind":"%s",'
    '"src_account_id":"%s","dst_account_id":"%s"%s}'
)
_LABEL = (
    '{"schema_version":1,"type":"label","event_id":"%s","event_time":"%sZ",'
    '"transaction_id":"%s","account_id":"%s","is_fraud":%s,"source":"%s"}'
)


@dataclass(frozen=True)
class EntityIds:
    """String ids per entity index; numbering is a seeded permutation of creation order."""

    account: np.ndarray
    card: np.ndarray
    merchant: np.ndarray
    device: np.ndarray
    ip: np.ndarray


def entity_ids(world: World, rng: np.random.Generator) -> EntityIds:
    def labels(prefix: str, n: int) -> np.ndarray:
        width = max(6, len(str(n)))
        return np.array([f"{prefix}{i:0{width}d}" for i in rng.permutation(n)])

    return EntityIds(
        account=labels("acc-", world.n_accounts),
        card=labels("card-", world.n_card_ids),
        merchant=labels("mer-", world.n_merchant_ids),
        device=labels("dev-", world.n_device_ids),
        ip=_ipv4(rng, world.n_ip_ids),
    )


def _ipv4(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct public-looking IPv4 addresses in random order."""
    values = np.empty(0, np.int64)
    while len(values) < n:
        more = rng.choice(_FIRST_OCTETS, 2 * n + 16) * 2**24 + rng.integers(
            1, 2**24 - 1, 2 * n + 16
        )
        merged = np.concatenate([values, more])
        _, first = np.unique(merged, return_index=True)
        values = merged[np.sort(first)]
    values = values[:n]
    octets = [(values >> s) & 255 for s in (24, 16, 8, 0)]
    return np.array([f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(*octets, strict=True)])


def sort_by_time(table: Table, start_ms: int) -> Table:
    """Adds ``ms`` (POSIX milliseconds) and returns the table sorted by it, ties in log order."""
    ms = start_ms + np.round(table["t"] * 1000.0).astype(np.int64)
    order = np.argsort(ms, kind="stable")
    out = {name: col[order] for name, col in table.items()}
    out["ms"] = ms[order]
    return out


@dataclass(frozen=True)
class Stream:
    """The four event tables, each sorted by ``ms``, and the string ids of every entity.

    ``labels`` has columns ``ms``, ``row`` (the payment's row in ``payments``) and ``fraud``.
    Row ``i`` of a table gets event id ``<prefix><i + 1>``.
    """

    payments: Table
    devices: Table
    social: Table
    labels: Table
    ids: EntityIds

    def rows(self, kind: str) -> int:
        return len(self.table(kind)["ms"])

    def table(self, kind: str) -> Table:
        return {"payment": self.payments, "device": self.devices, "social": self.social,
                "label": self.labels}[kind]  # fmt: skip


def _event_ids(prefix: str, rows: Iterable[int], n: int) -> list[str]:
    width = max(8, len(str(n)))
    return [f"{prefix}{i + 1:0{width}d}" for i in rows]


def iso_times(ms: np.ndarray) -> list[str]:
    """POSIX milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmm`` (UTC; the templates append ``Z``)."""
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").tolist()


def _slice(table: Table, lo: int, hi: int) -> Table:
    return {name: col[lo:hi] for name, col in table.items()}


def _optional(template: str, *cols: list[Any], present: list[bool]) -> list[str]:
    return [template % tuple(vals) if ok else "" for ok, *vals in zip(present, *cols, strict=True)]


def payment_lines(stream: Stream, lo: int, hi: int) -> list[str]:
    p, ids = _slice(stream.payments, lo, hi), stream.ids
    has_device = p["device"] >= 0
    tail = _optional(
        ',"device_id":"%s","ip":"%s"',
        ids.device[np.where(has_device, p["device"], 0)].tolist(),
        ids.ip[np.where(has_device, p["ip"], 0)].tolist(),
        present=has_device.tolist(),
    )
    rows = zip(
        _event_ids("tx-", range(lo, hi), stream.rows("payment")),
        iso_times(p["ms"]),
        ids.account[p["account"]].tolist(),
        ids.card[p["card"]].tolist(),
        ids.merchant[p["merchant"]].tolist(),
        p["amount"].tolist(),
        np.array(CHANNELS)[p["channel"]].tolist(),
        tail,
        strict=True,
    )
    return [_PAYMENT % row for row in rows]


def device_lines(stream: Stream, lo: int, hi: int) -> list[str]:
    d, ids = _slice(stream.devices, lo, hi), stream.ids
    has_ip = d["ip"] >= 0
    tail = _optional(
        ',"ip":"%s"', ids.ip[np.where(has_ip, d["ip"], 0)].tolist(), present=has_ip.tolist()
    )
    rows = zip(
        _event_ids("dv-", range(lo, hi), stream.rows("device")),
        iso_times(d["ms"]),
        np.array(DEVICE_KINDS)[d["kind"]].tolist(),
        ids.account[d["account"]].tolist(),
        ids.device[d["device"]].tolist(),
        tail,
        strict=True,
    )
    return [_DEVICE % row for row in rows]


def social_lines(stream: Stream, lo: int, hi: int) -> list[str]:
    s, ids = _slice(stream.social, lo, hi), stream.ids
    has_amount = ~np.isnan(s["amount"])
    tail = _optional(
        ',"amount":%.2f', np.nan_to_num(s["amount"]).tolist(), present=has_amount.tolist()
    )
    rows = zip(
        _event_ids("so-", range(lo, hi), stream.rows("social")),
        iso_times(s["ms"]),
        np.array(SOCIAL_KINDS)[s["kind"]].tolist(),
        ids.account[s["src"]].tolist(),
        ids.account[s["dst"]].tolist(),
        tail,
        strict=True,
    )
    return [_SOCIAL % row for row in rows]


def label_lines(stream: Stream, lo: int, hi: int) -> list[str]:
    lab = _slice(stream.labels, lo, hi)
    rows = zip(
        _event_ids("lb-", range(lo, hi), stream.rows("label")),
        iso_times(lab["ms"]),
        _event_ids("tx-", lab["row"].tolist(), stream.rows("payment")),
        stream.ids.account[stream.payments["account"][lab["row"]]].tolist(),
        lab["fraud"].tolist(),
        strict=True,
    )
    return [
        _LABEL % (lid, t, tx, acc, "true" if bad else "false", "chargeback" if bad else "analyst")
        for lid, t, tx, acc, bad in rows
    ]


RENDER: dict[str, Callable[[Stream, int, int], list[str]]] = {
    "payment": payment_lines,
    "device": device_lines,
    "social": social_lines,
    "label": label_lines,
}
"""Event type → the function formatting rows ``lo:hi`` of its table as JSON lines."""

GROUND_TRUTH_HEADER = "transaction_id,account_id,event_time,is_fraud,scenario"


def ground_truth_lines(stream: Stream, lo: int, hi: int) -> list[str]:
    """CSV rows for payments ``lo:hi``; ``is_fraud`` is 0/1, ``scenario`` empty when legit."""
    p = _slice(stream.payments, lo, hi)
    names = np.array(("", *SCENARIOS))[p["scenario"]].tolist()
    rows = zip(
        _event_ids("tx-", range(lo, hi), stream.rows("payment")),
        stream.ids.account[p["account"]].tolist(),
        iso_times(p["ms"]),
        (p["scenario"] > 0).tolist(),
        names,
        strict=True,
    )
    return [f"{tx},{acc},{t}Z,{int(bad)},{name}" for tx, acc, t, bad, name in rows]


# Each malformed record breaks exactly one rule that parse_event enforces.
_COMMON_FLAWS = (
    "missing_field", "naive_time", "impossible_time", "bad_event_id", "unknown_type",
    "extra_field", "schema_version", "truncated_json", "not_an_object",
)  # fmt: skip
_TYPE_FLAWS = {
    "payment": ("non_positive_amount", "bad_ip", "bad_currency", "bad_channel"),
    "device": ("bad_ip", "bad_kind"),
    "social": ("self_link", "p2p_without_amount", "bad_kind"),
    "label": ("bad_is_fraud", "bad_source"),
}
_REQUIRED = {
    "payment": "merchant_id",
    "device": "device_id",
    "social": "dst_account_id",
    "label": "transaction_id",
}


def _malformed(line: str, flaw: str, event_id: str) -> str:
    rec = json.loads(line)
    rec["event_id"] = event_id
    kind = rec["type"]
    if flaw == "truncated_json":
        return json.dumps(rec, separators=(",", ":"))[: len(line) // 2]
    if flaw == "not_an_object":
        return json.dumps([rec["event_id"], rec["event_time"]])
    edits: dict[str, dict[str, object]] = {
        "naive_time": {"event_time": rec["event_time"].rstrip("Z")},
        "impossible_time": {"event_time": rec["event_time"][:8] + "31T25:00:00Z"},
        "bad_event_id": {"event_id": event_id.replace("-", " ")},
        "unknown_type": {"type": "refund"},
        "extra_field": {"comment": "free text is not part of the schema"},
        "schema_version": {"schema_version": 2},
        "non_positive_amount": {"amount": -abs(rec.get("amount", 1.0))},
        "bad_ip": {"ip": "300.1.2.3"},
        "bad_currency": {"currency": "euro"},
        "bad_channel": {"channel": "atm"},
        "bad_kind": {"kind": "hug" if kind == "social" else "logout"},
        "self_link": {"dst_account_id": rec.get("src_account_id")},
        "p2p_without_amount": {"kind": "p2p_transfer", "amount": None},
        "bad_is_fraud": {"is_fraud": "maybe"},
        "bad_source": {"source": "rumour"},
    }
    if flaw == "missing_field":
        del rec[_REQUIRED[kind]]
    else:
        rec.update(edits[flaw])
    rec = {k: v for k, v in rec.items() if v is not None}
    return json.dumps(rec, separators=(",", ":"))


class Malformer:
    """Inserts malformed copies of records, each right after the line it was derived from.

    ``round(rate × len(lines))`` per call. Malformed records get ids ``bad-<n>``, numbered across
    all files, so they never collide with a valid event id. ``counts[kind][flaw]`` tallies them.
    """

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        self.rate = rate
        self.rng = rng
        self.counts: dict[str, dict[str, int]] = {kind: {} for kind in _TYPE_FLAWS}
        self._next_id = 1

    def __call__(self, lines: list[str], kind: str) -> list[str]:
        k = round(self.rate * len(lines))
        if k == 0:
            return lines
        flaws = (*_COMMON_FLAWS, *_TYPE_FLAWS[kind])
        after = np.sort(self.rng.integers(0, len(lines), k))
        chosen = self.rng.integers(0, len(flaws), k)
        out: list[str] = []
        prev = 0
        counts = self.counts[kind]
        for row, f in zip(after.tolist(), chosen.tolist(), strict=True):
            out.extend(lines[prev : row + 1])
            prev = row + 1
            out.append(_malformed(lines[row], flaws[f], f"bad-{self._next_id:08d}"))
            self._next_id += 1
            counts[flaws[f]] = counts.get(flaws[f], 0) + 1
        out.extend(lines[prev:])
        return out


def write_file(
    path: Path,
    rows: int,
    render: Callable[[int, int], list[str]],
    on_chunk: Callable[[int], object],
    header: str | None = None,
    chunk: int = 100_000,
) -> None:
    """Write ``render(lo, hi)`` for consecutive row ranges, newline-terminated, chunk by chunk
    (memory stays bounded by one chunk); ``on_chunk(hi - lo)`` reports progress."""
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        if header is not None:
            fh.write(header + "\n")
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            lines = render(lo, hi)
            fh.write("\n".join(lines) + "\n")
            on_chunk(hi - lo)
