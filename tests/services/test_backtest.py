"""Backtests: the leakage guard, label delay, and a report whose headline figures are
recomputed here independently from the scored payments."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from feature_stream.event_io import FileEventSource
from feature_stream.events import InvalidEvent, LabelEvent, Payment, parse_event
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import WindowStats
from feature_stream.features import FEATURE_NAMES
from feature_stream.generator import generate
from feature_stream.ingest import AnyEvent
from gnn.artifact import ModelBundle
from gnn.evaluation import ground_truth
from gnn.model import TemporalHeteroGNN
from gnn.train import DAY, stream_end
from services.backtest.command import stream_size
from services.backtest.metrics import card_precision_at_k, compute
from services.backtest.report import write_report
from services.backtest.run import BacktestConfig, LeakageError, ScoredPayment, run_backtest
from services.policy_opa import WasmPolicy
from tests.factories import SMALL_STREAM


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stream")
    generate(SMALL_STREAM, directory, progress=False)
    return directory


@pytest.fixture(scope="module")
def challenger(bundle: ModelBundle) -> ModelBundle:
    torch.manual_seed(1)
    return ModelBundle(
        TemporalHeteroGNN(len(FEATURE_NAMES), hidden=16),
        bundle.baseline,
        {"version": "gnn-test-2", "fanouts": [15, 10]},
    )


def _valid_events(stream: Path) -> Iterator[AnyEvent]:
    """The stream's events that pass validation (the generator plants malformed ones)."""
    for rec in FileEventSource(stream):
        try:
            yield parse_event(rec.value)
        except InvalidEvent:
            continue


class LeakyFeatureStore(InMemoryFeatureStore):
    """Planted bug: window queries ignore their end, so they see the payment itself and
    everything after it."""

    def _window(self, key: str, start: float, end: float) -> WindowStats:
        return super()._window(key, start, float("inf"))


def test_the_leakage_guard_stops_a_leaking_feature(stream: Path, bundle: ModelBundle) -> None:
    since = stream_end(stream) - DAY
    with pytest.raises(LeakageError, match=r"scored tx-\S+ .* with an input from") as info:
        run_backtest(
            FileEventSource(stream),
            {"champion": bundle},
            WasmPolicy(),
            BacktestConfig(since=since),
            features=LeakyFeatureStore(),
            progress=False,
        )
    assert info.value.used >= info.value.event_time


def test_labels_wait_for_the_configured_delay(stream: Path, bundle: ModelBundle) -> None:
    since = stream_end(stream) - DAY
    delay = 9 * DAY
    run = run_backtest(
        FileEventSource(stream),
        {"champion": bundle},
        WasmPolicy(),
        BacktestConfig(since=since, label_delay_s=delay),
        progress=False,
    )
    paid = {}
    own_time = {}
    for ev in _valid_events(stream):
        if isinstance(ev, Payment):
            paid[ev.event_id] = ev.event_time.timestamp()
        elif isinstance(ev, LabelEvent):
            own_time[ev.transaction_id] = ev.event_time.timestamp()
    assert run.labels
    for tx, (_, visible) in run.labels.items():
        expected = max(own_time[tx], paid.get(tx, -np.inf) + delay)
        assert visible == pytest.approx(expected, abs=1e-3)
    # Every scored input stayed strictly before its payment.
    assert run.payments
    assert all(v < p.t for p in run.payments for v in p.max_time_used.values())


def test_report_headline_matches_an_independent_recomputation(
    stream: Path, bundle: ModelBundle, challenger: ModelBundle, tmp_path: Path
) -> None:
    since = stream_end(stream) - 3 * DAY
    run = run_backtest(
        FileEventSource(stream),
        {"champion": bundle, "challenger": challenger},
        WasmPolicy(),
        BacktestConfig(since=since, chunk_s=1800.0, batch_size=64),
        progress=False,
    )
    truth = ground_truth(stream)
    metrics = compute(run, truth, k=5, bootstrap_rounds=50)
    paths = write_report(run, truth, metrics, tmp_path)
    report = json.loads(paths["json"].read_text())
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "<script" not in page
    assert "gnn-test-1" in page and "gnn-test-2" in page

    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    # Every payment of the window is in the CSV exactly once, with its true label.
    expected = [
        ev.event_id
        for ev in _valid_events(stream)
        if isinstance(ev, Payment) and ev.event_time.timestamp() >= since
    ]
    assert sorted(r["transaction_id"] for r in rows) == sorted(expected)
    y = np.array([truth[r["transaction_id"]][0] for r in rows])
    assert y.sum() > 0
    assert report["fraud"] == int(y.sum())
    for name in ("champion", "challenger"):
        s = np.array([float(r[f"score_{name}"]) for r in rows])
        alert = np.array([r[f"action_{name}"] in ("review", "decline") for r in rows])
        amount = np.array([float(r["amount"]) for r in rows])
        m = report["models"][name]
        assert m["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
        assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
        assert m["alert_rate"] == pytest.approx(alert.mean(), abs=1e-12)
        assert m["fraud_amount_caught"] == pytest.approx(amount[(y == 1) & alert].sum())
        assert m["fraud_amount_missed"] == pytest.approx(amount[(y == 1) & ~alert].sum())
    delta = report["deltas_vs_champion"]["challenger"]["auprc"]
    assert delta["delta"] == pytest.approx(
        report["models"]["challenger"]["auprc"] - report["models"]["champion"]["auprc"]
    )
    assert delta["ci_low"] <= delta["delta"] <= delta["ci_high"]


def _pay(tx: str, day: float, card: str, score: float) -> ScoredPayment:
    return ScoredPayment(tx, day * DAY + 60, "acc", card, "m", 10.0, scores={"m": score})


def test_card_precision_counts_cards_once_a_day_and_drops_known_ones() -> None:
    payments = [
        _pay("a", 0, "c1", 0.9),  # c1 fraud on day 0, top card
        _pay("b", 0, "c1", 0.2),
        _pay("c", 0, "c2", 0.8),  # legit
        _pay("d", 0, "c3", 0.1),  # fraud but ranked last
        _pay("e", 1, "c1", 0.95),  # c1 found on day 0: left out on day 1
        _pay("f", 1, "c4", 0.5),  # fraud
        _pay("g", 1, "c5", 0.4),
    ]
    y = [1, 0, 0, 1, 1, 1, 0]
    days = card_precision_at_k(payments, y, "m", k=2, known={"c5"})
    assert [d["cp_at_k"] for d in days] == [0.5, 0.5]
    assert [d["cards"] for d in days] == [3, 1]


def test_the_manifest_sizes_the_progress_bar(stream: Path) -> None:
    assert stream_size(stream) == sum(1 for _ in FileEventSource(stream))
