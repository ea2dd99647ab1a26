"""Checkpoint and resume: a run stopped part-way and resumed reports exactly what an
uninterrupted run reports, retrained model versions included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from feature_stream.event_io import FileEventSource
from feature_stream.features import FEATURE_NAMES
from gnn.artifact import ModelBundle, save_artifact
from gnn.baseline import TreeBaseline
from gnn.evaluation import ground_truth
from gnn.model import TemporalHeteroGNN
from gnn.train import DAY, History, TrainConfig, stream_end
from services.backtest.checkpoint import Checkpoint
from services.backtest.metrics import compute
from services.backtest.prequential import FitFn, Retrainer, RetrainSchedule
from services.backtest.report import write_report
from services.backtest.run import BacktestConfig, BacktestRun, run_backtest
from services.policy_opa import WasmPolicy


class Interrupted(Exception):
    """Stands for a crash or a kill part-way through the replay."""


def _cheap_fit(baseline: TreeBaseline) -> FitFn:
    """A stand-in for gnn.train.train (test_prequential runs it for real): a model that depends
    on the retrain time only, saved as an artifact the way train() saves one."""

    def fit(
        stream_dir: Path, out_dir: Path, cfg: TrainConfig, progress: bool, history: History
    ) -> tuple[ModelBundle, dict[str, Any]]:
        assert cfg.fit_time is not None
        at = int(cfg.fit_time.timestamp())
        torch.manual_seed(at)
        gnn = TemporalHeteroGNN(len(FEATURE_NAMES), hidden=16)
        bundle = ModelBundle(gnn, baseline, {"version": f"gnn-cheap-{at}", "fanouts": [15, 10]})
        save_artifact(out_dir, bundle, "test model")
        return bundle, {"train_examples": len(history.payments), "train_positives": 0}

    return fit


def _run(stream: Path, bundle: ModelBundle, tmp: Path, **options: Any) -> BacktestRun:
    since = stream_end(stream) - 2 * DAY
    schedule = RetrainSchedule("challenger", every_s=0.5 * DAY)
    retrainer = Retrainer(schedule, since, tmp / "models", fit=_cheap_fit(bundle.baseline))
    return run_backtest(
        FileEventSource(stream),
        {"champion": bundle, "challenger": bundle},
        WasmPolicy(),
        BacktestConfig(since=since, label_delay_s=DAY, chunk_s=1800.0, batch_size=64),
        progress=False,
        retrainer=retrainer,
        source=str(stream),
        **options,
    )


def _scores_csv(run: BacktestRun, stream: Path, out: Path) -> str:
    truth = ground_truth(stream)
    paths = write_report(run, truth, compute(run, truth, k=5, bootstrap_rounds=10), out)
    return paths["csv"].read_text()


def test_a_resumed_run_reports_what_an_uninterrupted_run_does(
    stream: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    whole = _run(stream, bundle, tmp_path / "whole")
    expected = _scores_csv(whole, stream, tmp_path / "whole-report")
    retrained = [c for c in whole.model_changes if c.since is not None]
    assert len(retrained) >= 3 and all(c.error is None for c in retrained)

    total = sum(1 for _ in FileEventSource(stream))
    stop_at = total - 400  # part-way through the scored window (the last two days)

    def crash(i: int) -> None:
        if i == stop_at:
            raise Interrupted

    ckpt_dir = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _run(stream, bundle, tmp_path / "run", checkpoint=Checkpoint(ckpt_dir, every=150),
             on_record=crash)  # fmt: skip
    state = json.loads((ckpt_dir / "state.json").read_text())
    assert not state["complete"]
    assert stop_at - 400 < state["position"] <= stop_at  # saved at most ~150 records back
    assert 0 < state["rows"] < len(whole.payments)
    assert any(c["since"] is not None for c in state["model_changes"])

    with pytest.raises(FileExistsError, match="resume"):
        _run(stream, bundle, tmp_path / "run", checkpoint=Checkpoint(ckpt_dir))

    resumed = _run(
        stream, bundle, tmp_path / "run", checkpoint=Checkpoint(ckpt_dir, every=150, resume=True)
    )
    assert _scores_csv(resumed, stream, tmp_path / "resumed-report") == expected

    def versions(run: BacktestRun) -> list[tuple[str, str, float | None]]:
        return [(c.model, c.version, c.since) for c in run.model_changes]

    assert versions(resumed) == versions(whole)
    assert (resumed.events, resumed.dead_letters) == (whole.events, whole.dead_letters)
    assert json.loads((ckpt_dir / "state.json").read_text())["complete"]


def test_a_checkpoint_refuses_a_differently_configured_run(
    stream: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    since = stream_end(stream) - 0.2 * DAY
    run_backtest(
        FileEventSource(stream),
        {"champion": bundle},
        WasmPolicy(),
        BacktestConfig(since=since),
        progress=False,
        checkpoint=Checkpoint(ckpt),
    )
    with pytest.raises(ValueError, match=r"differently configured run: \['config'\]"):
        run_backtest(
            FileEventSource(stream),
            {"champion": bundle},
            WasmPolicy(),
            BacktestConfig(since=since, label_delay_s=DAY),
            progress=False,
            checkpoint=Checkpoint(ckpt, resume=True),
        )
