"""``riskgraph backtest``: load the models and the policy, replay, report."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from feature_stream.event_io import FileEventSource
from gnn.artifact import load_artifact
from gnn.evaluation import ground_truth
from gnn.train import DAY, stream_end
from services.backtest.metrics import compute, truth_from_labels
from services.backtest.report import write_report
from services.backtest.run import BacktestConfig, run_backtest
from services.container import build_policy
from services.settings import Settings


def parse_models(specs: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` (or just ``DIR``, named by its folder) → ordered ``{name: dir}``."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        p = Path(path)
        name = name or p.name
        if name in out:
            raise ValueError(f"model name {name!r} given twice")
        out[name] = p
    return out


def window_start(stream: Path, since: str | None, last_days: float | None) -> float:
    """Epoch seconds where scoring starts: ``since`` (ISO 8601), else ``last_days`` before
    the stream's last payment."""
    if since is not None:
        return datetime.fromisoformat(since).timestamp()
    return stream_end(stream) - (7.0 if last_days is None else last_days) * DAY


def stream_size(stream: Path) -> int | None:
    """Records in a stream directory according to its manifest (``None`` if it has none)."""
    path = Path(stream) / "manifest.json"
    if not path.exists():
        return None
    files = json.loads(path.read_text()).get("files", {})
    counts = [
        (f.get("records"), f.get("malformed", 0))
        for name, f in files.items()
        if name.endswith(".jsonl")
    ]
    if not counts or not all(isinstance(r, int) and isinstance(m, int) for r, m in counts):
        return None
    return sum(r + m for r, m in counts)  # malformed lines are records too (dead letters)


def backtest_stream(
    stream: Path,
    models: dict[str, Path],
    out_dir: Path,
    since: float,
    until: float = math.inf,
    label_delay_days: float = 0.0,
    k: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay a stream directory with each model in ``models`` (the first is the champion)
    and the configured decision policy; writes the report; returns its metrics."""
    bundles = {name: load_artifact(path) for name, path in models.items()}
    policy = build_policy(Settings())
    cfg = BacktestConfig(since=since, until=until, label_delay_s=label_delay_days * DAY)
    try:
        run = run_backtest(
            FileEventSource(stream),
            bundles,
            policy,
            cfg,
            progress=progress,
            total=stream_size(stream),
        )
    finally:
        policy.close()
    truth_file = Path(stream) / "ground_truth.csv"
    truth = ground_truth(stream) if truth_file.exists() else truth_from_labels(run)
    metrics = compute(run, truth, k=k, seed=seed)
    paths = write_report(run, truth, metrics, out_dir, title=f"riskgraph backtest of {stream}")
    metrics["files"] = {k: str(v) for k, v in paths.items()}
    return metrics
