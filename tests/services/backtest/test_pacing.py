"""``speed``: the scored window replays at N times real time; the default is flat out."""

from __future__ import annotations

import time

import pytest

from feature_stream.event_io import InMemoryEventSource
from gnn.artifact import ModelBundle
from services.backtest.pacing import Pacer
from services.backtest.run import BacktestConfig, run_backtest
from services.policy_opa import WasmPolicy
from tests.factories import payment, ts


def _tiny_stream(span_s: float, n: int) -> InMemoryEventSource:
    pays = [
        payment(f"tx-{i}", i * span_s / (n - 1), account=f"acc-{i % 3}", card=f"card-{i % 3}")
        for i in range(n)
    ]
    return InMemoryEventSource([("payments", p.model_dump(mode="json")) for p in pays])


def test_a_paced_replay_takes_at_least_the_span_divided_by_the_speed(
    bundle: ModelBundle,
) -> None:
    span, speed = 3.0, 2.0
    t0 = time.monotonic()
    run = run_backtest(
        _tiny_stream(span, 7),
        {"champion": bundle},
        WasmPolicy(),
        BacktestConfig(since=ts(0)),
        progress=False,
        speed=speed,
    )
    wall = time.monotonic() - t0
    assert len(run.payments) == 7
    assert wall >= span / speed


def test_the_pacer_sleeps_the_event_gaps_divided_by_the_speed() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait(1_000.0)  # the first event sets the origin
    pacer.wait(1_008.0)  # 8 s of event time: due 2 s later
    now[0] += 5.0  # processing fell 5 s behind …
    pacer.wait(1_012.0)  # … so an event due 1 s later goes at once
    pacer.wait(1_024.0)  # due at origin + 6 s, it is origin + 7 s: at once
    pacer.wait(1_032.0)  # due at origin + 8 s
    assert slept == pytest.approx([2.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        Pacer(0.0)
