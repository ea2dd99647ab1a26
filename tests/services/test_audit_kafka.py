"""The service-mode audit sink against the real Kafka (``deploy/services.sh up kafka``).

Every record lands in the file log and, in the same order, on the audit topic; the topic's
copy verifies as a chain on its own, and a forged record on the topic is named.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from feature_stream.kafka_io import KafkaEventSink
from services.audit import FileAuditSink, chained_line, verify_audit_log
from services.audit_kafka import KafkaAuditSink, export_audit_topic
from services.cli import main as cli
from services.container import build_audit
from services.settings import Settings

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def _body(i: int) -> dict[str, object]:
    return {"kind": "inference", "request_id": f"tx-{i}", "score": i / 1000, "action": "approve"}


def test_every_record_reaches_the_topic_in_chain_order(tmp_path: Path) -> None:
    topic = f"audit-{uuid.uuid4().hex[:8]}"
    sink = KafkaAuditSink(tmp_path / "audit.log", BOOTSTRAP, topic, sync_every=16)
    receipts = [sink.append(_body(i)) for i in range(300)]
    sink.close()

    copy = tmp_path / "from-kafka.log"
    assert export_audit_topic(BOOTSTRAP, topic, copy) == 300
    result = verify_audit_log(copy, check_head=False)
    assert result.ok, result.error
    assert (result.records, result.last_hash) == (300, receipts[-1].hash)
    file_records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    topic_records = [json.loads(line) for line in copy.read_text().splitlines()]
    assert topic_records == file_records
    assert [r["request_id"] for r in topic_records] == [f"tx-{i}" for i in range(300)]
    assert verify_audit_log(tmp_path / "audit.log").ok

    assert cli(["audit", "verify", "--kafka-topic", topic, "--bootstrap", BOOTSTRAP]) == 0


def test_a_forged_record_on_the_topic_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"audit-{uuid.uuid4().hex[:8]}"
    sink = KafkaAuditSink(tmp_path / "audit.log", BOOTSTRAP, topic)
    for i in range(20):
        sink.append(_body(i))
    sink.close()
    # Someone with write access to the topic appends a record that does not extend the chain.
    line, _ = chained_line(20, "f" * 64, _body(99))
    forger = KafkaEventSink(BOOTSTRAP, topic)
    forger.send_to(topic, line.decode().strip(), key="audit")
    forger.close()

    assert cli(["audit", "verify", "--kafka-topic", topic, "--bootstrap", BOOTSTRAP]) == 1
    assert "BROKEN at record 20" in capsys.readouterr().err


def test_service_mode_settings_select_the_kafka_sink(tmp_path: Path) -> None:
    topic = f"audit-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        mode="service",
        audit_path=tmp_path / "audit.log",
        kafka_bootstrap=BOOTSTRAP,
        audit_topic=topic,
    )
    sink = build_audit(settings)
    assert isinstance(sink, KafkaAuditSink)
    sink.append(_body(0))
    sink.close()
    assert export_audit_topic(BOOTSTRAP, topic, tmp_path / "copy.log") == 1
    embedded = build_audit(Settings(audit_path=tmp_path / "embedded.log"))
    assert type(embedded) is FileAuditSink
    embedded.close()


def test_a_mirror_the_broker_refuses_fails_the_append_but_never_the_log(tmp_path: Path) -> None:
    import asyncio
    import contextlib
    import time

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import MessageSizeTooLargeError

    async def refusing(topic: str) -> None:  # every audit line is larger than 64 bytes
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            config = {"max.message.bytes": "64"}
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
        finally:
            await admin.close()

    topic = f"t-audit-refused-{uuid.uuid4().hex[:8]}"
    asyncio.run(refusing(topic))
    path = tmp_path / "audit.log"
    sink = KafkaAuditSink(path, BOOTSTRAP, topic)
    refused = 0
    try:
        for i in range(6):
            try:
                sink.append(_body(i))
            except MessageSizeTooLargeError:
                refused += 1  # an earlier line's batch was refused: the caller fails closed
            time.sleep(0.3)  # the broker answers the batch before the next append
    finally:
        with contextlib.suppress(MessageSizeTooLargeError):  # a last batch still in flight
            sink.close()
    assert refused >= 1
    # Every line is in the file, chained: the log verifies and a restart extends it.
    result = verify_audit_log(path)
    assert (result.ok, result.records) == (True, 6), result
    reopened = FileAuditSink(path)
    assert reopened.append(_body(6)).seq == 6
    reopened.close()
