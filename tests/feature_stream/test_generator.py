"""The synthetic stream generator: valid, sorted, deterministic, and the fraud it claims to hold."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from feature_stream.events import InvalidEvent, parse_event
from feature_stream.generator import FILES, SCENARIO_KNOBS, GeneratorConfig, generate, simulate
from feature_stream.generator_fraud import SCENARIOS, code
from feature_stream.generator_world import DAY

SMALL = GeneratorConfig(
    n_accounts=300,
    n_merchants=60,
    days=14,
    rings=1,
    takeover_waves=1,
    card_testing_bursts=3,
    mule_chains=2,
    device_farm_episodes=3,
    bust_out_merchants=1,
)
OUTPUTS = (*FILES.values(), "ground_truth.csv", "manifest.json")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PREFIX = {"payment": "tx-", "device": "dv-", "social": "so-", "label": "lb-"}


def _when(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream")
    generate(SMALL, path, progress=False)
    return path


@pytest.fixture(scope="module")
def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def records(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        kind: [json.loads(line) for line in (out / name).read_text().splitlines()]
        for kind, name in FILES.items()
    }


@pytest.fixture(scope="module")
def truth(out: Path) -> list[dict[str, str]]:
    with (out / "ground_truth.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def fraud(records: dict, truth: list[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    """Fraudulent payment records by scenario."""
    by_tx = {p["event_id"]: p for p in records["payment"]}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in truth:
        if row["scenario"]:
            out[row["scenario"]].append(by_tx[row["transaction_id"]])
    return out


def test_same_config_gives_byte_identical_files(out: Path, tmp_path: Path) -> None:
    generate(SMALL, tmp_path, progress=False)
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_another_seed_gives_another_stream(out: Path, tmp_path: Path) -> None:
    generate(SMALL.model_copy(update={"seed": SMALL.seed + 1}), tmp_path, progress=False)
    assert (tmp_path / "payments.jsonl").read_bytes() != (out / "payments.jsonl").read_bytes()
    assert (tmp_path / "ground_truth.csv").read_bytes() != (out / "ground_truth.csv").read_bytes()


def test_every_record_parses_as_an_event_of_its_file(out: Path, manifest: dict) -> None:
    for kind, name in FILES.items():
        lines = (out / name).read_text().splitlines()
        assert len(lines) == manifest["files"][name]["records"] > 0
        for line in lines:
            event = parse_event(line)
            assert event.type == kind
            assert event.event_id.startswith(PREFIX[kind])


def test_event_ids_are_unique_across_files(records: dict) -> None:
    ids = [r["event_id"] for recs in records.values() for r in recs]
    assert len(ids) == len(set(ids))


def test_files_are_sorted_by_time_then_id(records: dict) -> None:
    for kind, recs in records.items():
        keys = [(_when(r["event_time"]), r["event_id"]) for r in recs]
        assert keys == sorted(keys), kind
        assert all(TIME.match(r["event_time"]) for r in recs), kind


def test_events_fall_inside_the_period_and_labels_may_come_late(
    records: dict, manifest: dict
) -> None:
    start = SMALL.start
    end = start + timedelta(days=SMALL.days)
    for kind in ("payment", "device", "social"):
        assert all(start <= _when(r["event_time"]) < end for r in records[kind]), kind
    assert manifest["labels"]["after_period"] == sum(
        _when(r["event_time"]) >= end for r in records["label"]
    )


def test_labels_follow_their_payment_within_the_delay(records: dict, truth: list) -> None:
    payments = {p["event_id"]: p for p in records["payment"]}
    is_fraud = {row["transaction_id"]: row["is_fraud"] == "1" for row in truth}
    lo = timedelta(days=SMALL.label_delay_days_min)
    hi = timedelta(days=SMALL.label_delay_days_max)
    for label in records["label"]:
        paid = payments[label["transaction_id"]]
        delay = _when(label["event_time"]) - _when(paid["event_time"])
        assert lo <= delay <= hi
        assert label["account_id"] == paid["account_id"]
        assert label["is_fraud"] == is_fraud[label["transaction_id"]]
        assert label["source"] == ("chargeback" if label["is_fraud"] else "analyst")
    charged = {lb["transaction_id"] for lb in records["label"] if lb["is_fraud"]}
    assert charged == {tx for tx, bad in is_fraud.items() if bad}
    assert any(not lb["is_fraud"] for lb in records["label"])


def test_ground_truth_lists_every_payment_in_file_order(records: dict, truth: list) -> None:
    rows = [(r["transaction_id"], r["account_id"], r["event_time"]) for r in truth]
    payments = [(p["event_id"], p["account_id"], p["event_time"]) for p in records["payment"]]
    assert rows == payments
    assert all((r["is_fraud"] == "1") == (r["scenario"] in SCENARIOS) for r in truth)


def test_every_scenario_is_present_and_counted_in_the_manifest(truth: list, manifest: dict) -> None:
    counts = {name: sum(r["scenario"] == name for r in truth) for name in SCENARIOS}
    assert all(n >= 1 for n in counts.values()), counts
    assert manifest["fraud"]["by_scenario"] == counts
    assert manifest["fraud"]["payments"] == sum(r["is_fraud"] == "1" for r in truth)
    assert set(SCENARIO_KNOBS) == set(SCENARIOS)


def test_device_farm_payments_follow_three_accounts_on_the_device(
    records: dict, fraud: dict
) -> None:
    logins = defaultdict(list)
    for d in records["device"]:
        logins[d["device_id"]].append((_when(d["event_time"]), d["account_id"]))
    assert fraud["device_farm"]
    for p in fraud["device_farm"]:
        paid = _when(p["event_time"])
        recent = {
            acc for t, acc in logins[p["device_id"]] if paid - timedelta(minutes=5) <= t < paid
        }
        assert len(recent) >= 3 and p["account_id"] in recent


def test_legit_families_also_put_three_accounts_on_one_device_within_minutes(
    records: dict, truth: list
) -> None:
    legit = {r["transaction_id"] for r in truth if r["is_fraud"] == "0"}
    logins = defaultdict(list)
    for d in records["device"]:
        logins[d["device_id"]].append((_when(d["event_time"]), d["account_id"]))
    busy = set()
    for p in records["payment"]:
        if p["event_id"] in legit and "device_id" in p:
            paid = _when(p["event_time"])
            recent = {
                acc for t, acc in logins[p["device_id"]] if paid - timedelta(minutes=5) <= t < paid
            }
            if len(recent) >= 3 and p["account_id"] in recent:
                busy.add(p["device_id"])
    assert len(busy) >= 2


def test_every_scenario_reaches_the_last_week_of_the_default_stream() -> None:
    config = GeneratorConfig()
    world, log = simulate(config)
    pay = log.payments.build()
    last = pay["t"] >= world.span - 7 * DAY
    fraud = pay["scenario"] > 0
    counts = {name: int((last & (pay["scenario"] == code(name))).sum()) for name in SCENARIOS}
    assert all(n >= 5 for n in counts.values()), counts
    assert 200 <= (last & fraud).sum() <= 400
    assert 0.01 <= fraud.mean() <= 0.02
    visible = np.isin(pay["scenario"][fraud], [code("card_testing"), code("device_farm")])
    assert 0.1 <= visible.mean() <= 0.3


def test_card_testing_is_a_burst_of_tiny_payments_then_large_ones(fraud: dict) -> None:
    bursts = defaultdict(list)
    for p in fraud["card_testing"]:
        bursts[p["card_id"]].append(p)
    assert len(bursts) == SMALL.card_testing_bursts
    for burst in bursts.values():
        times = sorted(_when(p["event_time"]) for p in burst)
        assert times[-1] - times[0] <= timedelta(minutes=30)
        tiny = [p for p in burst if p["amount"] <= 5]
        large = [p for p in burst if p["amount"] > 5]
        assert 5 <= len(tiny) <= 20 and 1 <= len(large) <= 2
        assert len({p["merchant_id"] for p in tiny}) <= 3
        assert max(p["event_time"] for p in tiny) < min(p["event_time"] for p in large)


def test_ring_members_rotate_devices_but_link_to_earlier_members(
    records: dict, fraud: dict
) -> None:
    first_paid: dict[str, str] = {}
    per_device: dict[str, int] = defaultdict(int)
    for p in sorted(fraud["ring"], key=lambda p: p["event_time"]):
        first_paid.setdefault(p["account_id"], p["event_time"])
        if "device_id" in p:
            per_device[p["device_id"]] += 1
    assert len(first_paid) >= 10
    # Fresh fingerprints: most devices carry one or two of the ring's payments.
    assert sum(n <= 2 for n in per_device.values()) >= 0.8 * len(per_device)
    linked: dict[str, set[str]] = defaultdict(set)
    for s in records["social"]:
        for a, b in ((s["src_account_id"], s["dst_account_id"]),
                     (s["dst_account_id"], s["src_account_id"])):  # fmt: skip
            if a in first_paid and b in first_paid and s["event_time"] < first_paid[a]:
                linked[a].add(b)
    # Every member but the founder knew another member before paying for the ring.
    assert sum(bool(linked[a]) for a in first_paid) >= len(first_paid) - 1


def test_account_takeover_uses_one_new_device_per_wave(records: dict, fraud: dict) -> None:
    accounts_on = defaultdict(set)
    for p in fraud["account_takeover"]:
        accounts_on[p["device_id"]].add(p["account_id"])
    # One crew device per wave pays for several victims; the drops cash out from their own.
    crew = {d for d, accs in accounts_on.items() if len(accs) >= 3}
    assert len(crew) == SMALL.takeover_waves
    first_use = {}
    for d in records["device"]:
        first_use.setdefault((d["account_id"], d["device_id"]), d["event_time"])
    ips = set()
    for p in fraud["account_takeover"]:
        if p["device_id"] in crew:
            assert first_use[(p["account_id"], p["device_id"])] < p["event_time"]
            ips.add(p["ip"])
    assert len(ips) >= 3  # sessions rotate through proxies


def test_mules_cash_out_after_receiving_transfers(records: dict, fraud: dict) -> None:
    received = defaultdict(list)
    for s in records["social"]:
        if s["kind"] == "p2p_transfer":
            received[s["dst_account_id"]].append(s["event_time"])
    assert fraud["mule_chain"]
    for p in fraud["mule_chain"]:
        assert min(received[p["account_id"]]) < p["event_time"]


def test_bust_out_merchants_appear_mid_stream_and_only_take_fraud(
    records: dict, fraud: dict
) -> None:
    merchants = {p["merchant_id"] for p in fraud["bust_out_merchant"]}
    at_them = [p for p in records["payment"] if p["merchant_id"] in merchants]
    assert len(at_them) == len(fraud["bust_out_merchant"])
    assert len({p["account_id"] for p in at_them}) >= 10
    earliest = SMALL.start + timedelta(days=0.3 * SMALL.days)
    assert min(_when(p["event_time"]) for p in at_them) >= earliest


def test_malformed_records_are_counted_and_all_rejected(out: Path, tmp_path: Path) -> None:
    manifest = generate(SMALL.model_copy(update={"invalid_rate": 0.05}), tmp_path, progress=False)
    assert sum(manifest["malformed_by_flaw"].values()) > 0
    for name in FILES.values():
        good, bad = [], []
        for line in (tmp_path / name).read_text().splitlines():
            try:
                parse_event(line)
                good.append(line)
            except InvalidEvent:
                bad.append(line)
        assert len(bad) == manifest["files"][name]["malformed"] > 0
        assert good == (out / name).read_text().splitlines()


def test_config_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        GeneratorConfig.model_validate({"n_acounts": 10})
    with pytest.raises(ValidationError):
        GeneratorConfig(label_delay_days_min=5, label_delay_days_max=3)
    with pytest.raises(ValueError, match="n_accounts"):
        generate(SMALL.model_copy(update={"rings": 40}), tmp_path, progress=False)
