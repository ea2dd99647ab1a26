"""Checkpoints of a backtest, and resuming from one.

What is saved (in ``DIR``), at a chunk boundary at least every ``every`` source records:

* ``state.json`` – the source position (records consumed, malformed ones included), the number
  of scored rows, the model versions in use and their artifacts (retrained ones), the
  prequential schedule's progress, and a fingerprint of the run's configuration;
* ``rows.jsonl`` – the scored payments, appended (only the first ``rows`` lines count).

The stores are not saved: on resume the first ``position`` records are re-ingested without
scoring, which rebuilds exactly the stores, label heap and counters the interrupted run had at
that boundary (ingestion is deterministic), and scoring continues from there. A resumed run's
report therefore equals an uninterrupted one's, provided the source yields the same records in
the same order (a stream directory always does; a Kafka range does when ``--to`` is fixed).

Writes are crash-safe: rows are appended and fsynced before ``state.json`` is replaced
atomically, so a crash mid-save leaves the previous checkpoint valid.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.backtest.config import ModelChange, ScoredPayment

log = logging.getLogger(__name__)
FORMAT = 1


@dataclass
class CheckpointState:
    """Where a backtest stood at a chunk boundary."""

    position: int  # source records consumed before the boundary
    rows: list[ScoredPayment]
    model_changes: list[ModelChange]
    artifacts: dict[str, str] = field(default_factory=dict)  # name → retrained artifact in use
    retrain_slots_done: int = 0
    complete: bool = False


class Checkpoint:
    """A checkpoint directory (see module docs).

    Args:
        every: save at the first chunk boundary at least this many source records after the
            last save.
        resume: continue from the saved state. Without it, a directory that already holds a
            checkpoint is refused rather than overwritten. With it and no saved state, the run
            starts from the beginning.
    """

    def __init__(self, directory: Path, every: int = 50_000, resume: bool = False) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.directory = Path(directory)
        self.every = every
        self.resume = resume
        self._written = 0  # rows already in rows.jsonl
        self._fingerprint: dict[str, Any] = {}

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def rows_path(self) -> Path:
        return self.directory / "rows.jsonl"

    def start(self, fingerprint: dict[str, Any]) -> CheckpointState | None:
        """Open the directory for a run configured as ``fingerprint``; the state to resume
        from, or ``None`` to start from the beginning."""
        self._fingerprint = json.loads(json.dumps(fingerprint))
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.state_path.exists():
            if self.resume:
                log.warning("no checkpoint in %s: starting from the beginning", self.directory)
            self.rows_path.write_text("")
            return None
        if not self.resume:
            raise FileExistsError(
                f"{self.directory} already holds a backtest checkpoint: resume it (--resume) "
                "or choose another directory"
            )
        saved = json.loads(self.state_path.read_text())
        if saved.get("format") != FORMAT:
            raise ValueError(f"checkpoint format {saved.get('format')} is not {FORMAT}")
        if saved["fingerprint"] != self._fingerprint:
            diff = sorted(
                k
                for k in set(saved["fingerprint"]) | set(self._fingerprint)
                if saved["fingerprint"].get(k) != self._fingerprint.get(k)
            )
            raise ValueError(f"the checkpoint was made by a differently configured run: {diff}")
        rows = self._read_rows(saved["rows"])
        return CheckpointState(
            position=saved["position"],
            rows=rows,
            model_changes=[ModelChange(**c) for c in saved["model_changes"]],
            artifacts=saved["artifacts"],
            retrain_slots_done=saved["retrain_slots_done"],
            complete=saved["complete"],
        )

    def _read_rows(self, count: int) -> list[ScoredPayment]:
        rows: list[ScoredPayment] = []
        size = 0
        with open(self.rows_path, "rb") as fh:
            for line in fh:
                if len(rows) == count:
                    break
                rows.append(ScoredPayment(**json.loads(line)))
                size += len(line)
        if len(rows) != count:
            raise ValueError(f"{self.rows_path} holds {len(rows)} rows, the state says {count}")
        # Rows appended after the last state save belong to no checkpoint: drop them.
        os.truncate(self.rows_path, size)
        self._written = count
        return rows

    def save(self, state: CheckpointState) -> None:
        """Append the rows not saved yet, then replace ``state.json`` atomically."""
        with open(self.rows_path, "a", encoding="utf-8") as fh:
            for row in state.rows[self._written :]:
                fh.write(json.dumps(dataclasses.asdict(row)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._written = len(state.rows)
        doc = {
            "format": FORMAT,
            "fingerprint": self._fingerprint,
            "position": state.position,
            "rows": len(state.rows),
            "model_changes": [dataclasses.asdict(c) for c in state.model_changes],
            "artifacts": state.artifacts,
            "retrain_slots_done": state.retrain_slots_done,
            "complete": state.complete,
        }
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
