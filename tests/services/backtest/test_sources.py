"""A Kafka time range as a backtest source, against the real Kafka
(``deploy/services.sh up kafka``; a missing broker fails the test, never skips it).

A generated stream is produced to fresh topics between records that lie outside the range;
backtesting the range from Kafka gives the same scores and actions as backtesting the files.
"""

from __future__ import annotations

import csv
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feature_stream.event_io import FileEventSource
from feature_stream.kafka_io import KafkaEventSink, all_topics, produce_stream
from gnn.artifact import ModelBundle, save_artifact
from gnn.train import DAY, stream_end
from services.backtest.sources import KafkaRangeSource
from services.cli import main as cli
from tests.services_up import require

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="module", autouse=True)
def kafka() -> None:
    require("kafka")


def _outsiders(stream: Path, suffix: str, n: int = 40) -> list[dict[str, object]]:
    """Copies of the last payments under new ids: scored (and shifting features) if read."""
    pays = [r.value for r in FileEventSource(stream, topics=("payments",))]
    return [dict(v, event_id=f"{v['event_id']}-{suffix}") for v in pays[-n:] if isinstance(v, dict)]


def _now_between() -> datetime:
    """A produce-time boundary: records before it and after it get distinct timestamps."""
    time.sleep(0.05)
    when = datetime.now(UTC)
    time.sleep(0.05)
    return when


def _decisions(path: Path) -> list[dict[str, str]]:
    keep = ("transaction_id", "event_time", "score_champion", "action_champion")
    with open(path, newline="") as fh:
        return [{k: row[k] for k in keep} for row in csv.DictReader(fh)]


def test_a_kafka_range_backtests_like_the_files(
    stream: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    prefix = f"bt-{uuid.uuid4().hex[:8]}-"
    sink = KafkaEventSink(BOOTSTRAP, prefix=prefix)
    try:
        sink.ensure_topics(all_topics(prefix))
        sink.send_many([(prefix + "payments", None, v) for v in _outsiders(stream, "early")])
        sink.flush()
        start = _now_between()
        produce_stream(stream, sink, progress=False)
        end = _now_between()
        sink.send_many([(prefix + "payments", None, v) for v in _outsiders(stream, "late")])
        sink.flush()
    finally:
        sink.close()

    source = KafkaRangeSource(BOOTSTRAP, prefix, start, end)
    records = sum(1 for _ in FileEventSource(stream))
    assert source.size() == records
    assert source.last_payment_time() == pytest.approx(stream_end(stream), abs=1e-3)
    read = list(source)
    assert [(r.topic, r.value) for r in read] == [
        (r.topic, r.value) for r in FileEventSource(stream)
    ]

    model = save_artifact(tmp_path / "model", bundle, "test model")
    since = datetime.fromtimestamp(stream_end(stream) - DAY, UTC).isoformat()
    common = ["--model", f"champion={model}", "--since", since, "--k", "5", "--quiet"]
    kafka_args = ["--kafka-bootstrap", BOOTSTRAP, "--topic-prefix", prefix]
    kafka_args += ["--from", start.isoformat(), "--to", end.isoformat()]
    assert cli(["backtest", *kafka_args, "--out", str(tmp_path / "kafka"), *common]) == 0
    assert (
        cli(["backtest", "--stream", str(stream), "--out", str(tmp_path / "files"), *common]) == 0
    )
    from_kafka = _decisions(tmp_path / "kafka" / "scores.csv")
    from_files = _decisions(tmp_path / "files" / "scores.csv")
    assert len(from_files) > 100
    assert from_kafka == from_files
