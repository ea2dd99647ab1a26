"""A backtest in several forked workers reports what one replay reports: every payment, in
order, with the same scores, actions and inputs' times; the same labels and counts."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from feature_stream.event_io import FileEventSource
from feature_stream.graph_memory import InMemoryGraphStore
from gnn.artifact import ModelBundle
from gnn.train import DAY, stream_end
from services.backtest.parallel import run_backtest_parallel, slice_bounds
from services.backtest.run import BacktestConfig, LeakageError, run_backtest
from services.policy_opa import WasmPolicy
from tests.services.api_harness import bundle  # noqa: F401 - shared fixture
from tests.services.test_backtest import LeakyFeatureStore


def test_slices_are_equal_spans_that_cover_the_window() -> None:
    assert slice_bounds(10.0, 70.0, 3) == [10.0, 30.0, 50.0, 70.0]
    assert slice_bounds(10.0, 70.0, 1) == [10.0, 70.0]
    with pytest.raises(ValueError, match="workers"):
        slice_bounds(0.0, 1.0, 0)
    with pytest.raises(ValueError, match="finite since < end"):
        slice_bounds(0.0, math.inf, 2)


def test_three_workers_report_what_one_replay_reports(stream: Path, bundle: ModelBundle) -> None:  # noqa: F811
    end = stream_end(stream)
    cfg = BacktestConfig(since=end - 2 * DAY, label_delay_s=0.5 * DAY, chunk_s=1800.0)
    models = {"gnn": bundle, "tree": bundle}
    rungs = {"tree": "tree"}
    one = run_backtest(
        FileEventSource(stream), models, WasmPolicy(), cfg, progress=False, rungs=rungs
    )
    many = run_backtest_parallel(
        FileEventSource(stream), models, WasmPolicy(), cfg, end + 1, 3, progress=False,
        rungs=rungs,
    )  # fmt: skip
    assert len(one.payments) > 100
    assert [p.transaction_id for p in many.payments] == [p.transaction_id for p in one.payments]
    # Every slice was scored (the window's three days-thirds each hold payments).
    bounds = slice_bounds(cfg.since, end + 1, 3)
    for lo, hi in itertools.pairwise(bounds):
        assert any(lo <= p.t < hi for p in many.payments)
    for a, b in zip(one.payments, many.payments, strict=True):
        # The workers' GNN pass is numpy's on one thread; float32 rounding apart, the same.
        assert b.scores == pytest.approx(a.scores, abs=1e-5)
        assert b.actions == a.actions
        assert b.max_time_used == a.max_time_used
        assert b.versions == a.versions
    assert many.labels == one.labels
    assert many.card_of == one.card_of
    assert (many.events, many.dead_letters) == (one.events, one.dead_letters)
    assert many.dead_letters > 0  # the generator plants malformed records
    assert many.config == cfg and many.models == one.models


def test_a_workers_error_reaches_the_caller(stream: Path, bundle: ModelBundle) -> None:  # noqa: F811
    end = stream_end(stream)
    with pytest.raises(LeakageError, match=r"scored tx-\S+ .* with an input from"):
        run_backtest_parallel(
            FileEventSource(stream), {"champion": bundle}, WasmPolicy(),
            BacktestConfig(since=end - DAY), end + 1, 2, features=LeakyFeatureStore(),
            progress=False,
        )  # fmt: skip


def test_past_the_degree_cap_neither_chunks_nor_workers_change_a_score(
    stream: Path,
    bundle: ModelBundle,  # noqa: F811
) -> None:
    end = stream_end(stream)
    models = {"gnn": bundle}

    def run(chunk_s: float, workers: int) -> dict[str, float]:
        cfg = BacktestConfig(since=end - DAY, chunk_s=chunk_s)
        out = run_backtest_parallel(
            FileEventSource(stream), models, WasmPolicy(), cfg, end + 1, workers,
            graph=InMemoryGraphStore(max_degree=4), progress=False,
        )  # fmt: skip
        return {p.transaction_id: p.scores["gnn"] for p in out.payments}

    hourly = run(3600.0, 1)
    assert len(hourly) > 50
    for other in (run(600.0, 1), run(3600.0, 2)):
        assert other.keys() == hourly.keys()
        assert max(abs(other[k] - hourly[k]) for k in hourly) < 1e-5
