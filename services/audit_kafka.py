"""The service-mode audit sink: the hash-chained file log, plus every record on a Kafka topic.

The file stays the source of durability (fsync'd group commit and its ``.head`` anchor, as
in :class:`~services.audit.FileAuditSink`); each line is also produced, in chain order, to a
single-partition topic by an idempotent producer with ``acks=all``, so the log survives the
loss of the scoring host and can be read by other systems. :meth:`flush` (and every
``close``) returns only once Kafka has acknowledged every record sent so far; a failed send
raises from a later ``append`` or ``flush``, so the caller fails closed.

:func:`export_audit_topic` copies the topic back into a log file that
:func:`~services.audit.verify_audit_log` checks like any other (``riskgraph audit verify
--kafka-topic``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feature_stream.kafka_io import KafkaEventSink, KafkaEventSource
from services.audit import AuditSink, FileAuditSink, Receipt

AUDIT_TOPIC = "audit"
AUDIT_KEY = "audit"
"""Every record has the same key, so even a topic with several partitions keeps one order."""


class KafkaAuditSink(AuditSink):
    def __init__(
        self, path: Path, bootstrap: str, topic: str = AUDIT_TOPIC, sync_every: int = 64
    ) -> None:
        self.topic = topic
        self._kafka = KafkaEventSink(bootstrap, topic, client_id="riskgraph-audit")
        try:
            self._kafka.ensure_topics([topic], partitions=1)
            self._file = FileAuditSink(path, sync_every, mirror=self._publish)
        except BaseException:
            self._kafka.close()
            raise
        self.path = self._file.path

    def _publish(self, line: bytes) -> None:
        self._kafka.send_to(self.topic, line.rstrip(b"\n").decode(), key=AUDIT_KEY)

    def _append(self, body: dict[str, Any]) -> Receipt:
        return self._file.append(body)

    def flush(self) -> None:
        self._file.flush()
        self._kafka.flush()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._kafka.close()


def export_audit_topic(bootstrap: str, topic: str, out: Path, idle_timeout_s: float = 3.0) -> int:
    """Write the topic's records, in offset order, as a log file at ``out``; returns how many.

    Reads from the beginning without a consumer group and stops after ``idle_timeout_s``
    without a new record."""
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for record in KafkaEventSource(bootstrap, [topic], idle_timeout_s=idle_timeout_s):
            value = record.value
            fh.write(value if isinstance(value, str) else json.dumps(value))
            fh.write("\n")
            n += 1
    return n
