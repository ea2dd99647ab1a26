"""Prequential retraining inside a backtest: test on what comes next, then train on it.

At each scheduled event time ``T = since + k · every`` (``k = 1, 2, …``) the replay stops
scoring, retrains one model (named in :class:`RetrainSchedule`; the CLI picks the last
``--model``, i.e. the challenger, or the champion when it is alone) with
:func:`gnn.train.train` on the replay's own stores, and the new version scores every payment
from ``T`` on. At that moment the stores hold exactly the events before ``T`` and the labels
visible before ``T`` (a label is visible from its own time, or ``label_delay_s`` after its
payment if that is later): nothing at or after ``T`` is ingested yet, so training cannot see
it. ``fit_time`` is ``T``, so targets are the labels known strictly before ``T``.

Training window: with ``window_s`` set, training and validation payments are drawn from
``[T - window_s, T)`` (the train config's label-delay gap and validation days included);
otherwise from everything replayed after the train config's warm-up.

A retraining that cannot run (too little history, no fraud label in a split) is recorded as a
:class:`~services.backtest.config.ModelChange` with ``error`` set, and the model in place
keeps scoring.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import IngestStats
from gnn.artifact import ModelBundle
from gnn.train import History, TrainConfig, train
from services.backtest.config import ModelChange

FitFn = Callable[..., tuple[ModelBundle, dict[str, Any]]]
"""Signature of :func:`gnn.train.train`: ``(stream_dir, out_dir, cfg, progress, history)``."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"90m"``, ``"30s"``, ``"2w"`` (decimals allowed) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"not a positive duration like 7d, 12h, 90m, 30s or 2w: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class RetrainSchedule:
    """Retrain ``model`` every ``every_s`` of event time on the last ``window_s`` (``None``:
    everything replayed) with ``train`` (its ``fit_time`` is replaced by each retrain time)."""

    model: str
    every_s: float
    window_s: float | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not self.every_s > 0 or (self.window_s is not None and not self.window_s > 0):
            raise ValueError("every_s and window_s must be positive")


class Retrainer:
    """Keeps the payments training may use and retrains on schedule (see module docs).

    Args:
        anchor: event time the schedule counts from (the scored window's start).
        artifacts_dir: each retrained artifact is written to ``<dir>/<model>-<k>``.
        fit: the training entry point (default :func:`gnn.train.train`).
        source: named in each artifact's manifest as the data it was trained on.
    """

    def __init__(
        self,
        schedule: RetrainSchedule,
        anchor: float,
        artifacts_dir: Path,
        fit: FitFn = train,
        source: str = "backtest replay",
        progress: bool = False,
    ) -> None:
        self.schedule = schedule
        self.anchor = anchor
        self.artifacts_dir = Path(artifacts_dir)
        self.fit = fit
        self.source = source
        self.progress = progress
        self.slots_done = 0  # retrain times handled: anchor + k·every for k ≤ slots_done
        self._payments: deque[Payment] = deque()

    @property
    def next_time(self) -> float:
        """The next scheduled retrain time."""
        return self.anchor + (self.slots_done + 1) * self.schedule.every_s

    def keep(self, payment: Payment) -> None:
        """Remember an ingested payment (called in ingestion order) as a training candidate."""
        self._payments.append(payment)

    def due(self, t: float) -> float | None:
        """The latest scheduled time ``<= t`` not handled yet, now marked handled; ``None`` if
        none. (Several times passed without an event between them retrain once: the stores
        are the same at each of them.)"""
        if t < self.next_time:
            return None
        self.slots_done = max(
            self.slots_done + 1, math.floor((t - self.anchor) / self.schedule.every_s)
        )
        return self.anchor + self.slots_done * self.schedule.every_s

    def retrain(
        self,
        at: float,
        current_version: str,
        graph: GraphStore,
        features: FeatureStore,
        stats: IngestStats,
        dead_letters: InMemoryEventSink,
        first_ts: float,
        last_ts: float,
    ) -> tuple[ModelBundle | None, ModelChange]:
        """Train on the stores as they are at event time ``at`` (they must hold nothing at or
        after it). Returns the new bundle (``None`` if training could not run) and its record."""
        if not isinstance(graph, InMemoryGraphStore) or not isinstance(
            features, InMemoryFeatureStore
        ):
            raise TypeError("prequential retraining trains on the in-memory stores")
        if last_ts >= at:
            raise RuntimeError(f"the stores hold an event at {last_ts} >= retrain time {at}")
        name = self.schedule.model
        lo = at - self.schedule.window_s if self.schedule.window_s is not None else -math.inf
        while self._payments and self._payments[0].event_time.timestamp() < lo:
            self._payments.popleft()
        cfg = self.schedule.train.model_copy(update={"fit_time": datetime.fromtimestamp(at, UTC)})
        # train() starts its training split at first_ts + warm-up: moving first_ts up to
        # lo - warm-up starts it at the window's start (history before it stays in the stores
        # for features and sampling).
        first = max(first_ts, lo - cfg.warmup_days * 86_400.0)
        hist = History(graph, features, list(self._payments), stats, dead_letters, first, last_ts)
        out = self.artifacts_dir / f"{name}-{self.slots_done:03d}"
        try:
            bundle, metrics = self.fit(Path(self.source), out, cfg, self.progress, hist)
        except ValueError as exc:  # not enough history or labels for this window
            return None, ModelChange(name, current_version, at, error=str(exc))
        trained_on = {
            "fit_time": at,
            "window_start": None if lo == -math.inf else lo,
            "payments_in_window": len(hist.payments),
            "train_examples": metrics.get("train_examples"),
            "train_positives": metrics.get("train_positives"),
        }
        return bundle, ModelChange(name, bundle.version, at, str(out), trained_on)
