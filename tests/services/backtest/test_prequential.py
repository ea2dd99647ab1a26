"""Prequential retraining: gnn.train.train runs inside the replay on exactly what was visible
at the retrain time, and the new version takes over from that time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from feature_stream.event_io import FileEventSource
from feature_stream.events import InvalidEvent, LabelEvent, Payment, parse_event
from gnn.artifact import ModelBundle, load_artifact
from gnn.train import DAY, History, TrainConfig, stream_end, train
from services.backtest.prequential import Retrainer, RetrainSchedule, parse_duration
from services.backtest.run import BacktestConfig, run_backtest
from services.policy_opa import WasmPolicy


def _stream_times(stream: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Payment time by transaction, and own time of its last label."""
    paid: dict[str, float] = {}
    labelled: dict[str, float] = {}
    for rec in FileEventSource(stream):
        try:
            ev = parse_event(rec.value)
        except InvalidEvent:
            continue
        if isinstance(ev, Payment):
            paid[ev.event_id] = ev.event_time.timestamp()
        elif isinstance(ev, LabelEvent):
            labelled[ev.transaction_id] = ev.event_time.timestamp()
    return paid, labelled


def test_retraining_sees_only_what_was_visible_and_takes_over_on_schedule(
    stream: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    end = stream_end(stream)
    since, every, delay = end - 3.5 * DAY, 2 * DAY, 1 * DAY
    at = since + every  # the one retrain time before the run stops at the last payment
    paid, label_time = _stream_times(stream)
    calls: list[dict[str, Any]] = []

    def recording_train(
        stream_dir: Path, out_dir: Path, cfg: TrainConfig, progress: bool, history: History
    ) -> tuple[ModelBundle, dict[str, Any]]:
        # What training is handed, captured now: the replay goes on writing to these stores.
        stored = history.graph.labels_for(list(label_time))
        calls.append(
            {
                "fit_time": cfg.fit_time.timestamp() if cfg.fit_time else None,
                "payments": {p.event_id: p.event_time.timestamp() for p in history.payments},
                "labels": {tx: [lb.ts for lb in labels] for tx, labels in stored.items()},
                "last_ts": history.last_ts,
            }
        )
        return train(stream_dir, out_dir, cfg, progress, history)

    schedule = RetrainSchedule(
        "challenger",
        every_s=parse_duration("2d"),
        window_s=parse_duration("8d"),
        train=TrainConfig(
            warmup_days=1, label_delay_days=0, val_days=4, epochs=1, hidden=16, negative_rate=0.2
        ),
    )
    run = run_backtest(
        FileEventSource(stream),
        {"champion": bundle, "challenger": bundle},
        WasmPolicy(),
        BacktestConfig(since=since, until=end + 1, label_delay_s=delay),
        progress=False,
        retrainer=Retrainer(schedule, since, tmp_path / "models", fit=recording_train),
    )

    [call] = calls
    assert call["fit_time"] == pytest.approx(at)
    # No payment and no label at or after the retrain time was handed to training …
    assert call["payments"] and max(call["payments"].values()) < at
    assert min(call["payments"].values()) >= at - 8 * DAY  # … and only the training window
    assert call["last_ts"] < at
    # … and each label that was there became visible as the delay says, every one before `at`;
    # every label visible before `at` was there.
    visible = {tx: max(own, paid.get(tx, -float("inf")) + delay) for tx, own in label_time.items()}
    assert call["labels"]
    for tx, times in call["labels"].items():
        assert max(times) < at
        assert max(times) == pytest.approx(visible[tx], abs=1e-3)
    assert set(call["labels"]) == {tx for tx, v in visible.items() if v < at}

    initial, retrained = (c for c in run.model_changes if c.model == "challenger")
    assert (initial.version, initial.since) == ("gnn-test-1", None)
    assert retrained.error is None and retrained.since == pytest.approx(at)
    assert retrained.version.startswith("gnn-") and retrained.version != "gnn-test-1"
    assert retrained.artifact is not None
    reloaded = load_artifact(Path(retrained.artifact))
    assert reloaded.version == retrained.version
    assert reloaded.rule_rates is not None  # the policy rung's rates, from its own window
    before = [p for p in run.payments if p.t < at]
    after = [p for p in run.payments if p.t >= at]
    assert before and after
    assert {p.versions["challenger"] for p in before} == {"gnn-test-1"}
    assert {p.versions["challenger"] for p in after} == {retrained.version}
    assert {p.versions["champion"] for p in run.payments} == {"gnn-test-1"}
    assert all(p.scores["challenger"] == p.scores["champion"] for p in before)
    assert any(p.scores["challenger"] != p.scores["champion"] for p in after)


def test_durations_read_like_a_schedule() -> None:
    assert parse_duration("7d") == 7 * DAY
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("1.5w") == 1.5 * 7 * DAY
    with pytest.raises(ValueError, match="duration"):
        parse_duration("7")
