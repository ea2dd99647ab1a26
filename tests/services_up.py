"""The real servers for integration tests: one check that they answer, and Kafka progress.

In CI a missing service fails the run, never skips it: :func:`require` calls ``pytest.fail``
naming each server that did not answer and how to start it.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from feature_stream.kafka_io import committed_offsets, source_topics, topic_partitions

BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
NEO4J_URI = os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687")
REDIS_URL = os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _kafka() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        await admin.list_topics()
    finally:
        await admin.close()


def _neo4j() -> None:
    import neo4j

    with neo4j.GraphDatabase.driver(NEO4J_URI, auth=None) as driver:
        driver.verify_connectivity()


def _redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()


_CHECKS = {
    "kafka": (f"Kafka at {BOOTSTRAP}", lambda: asyncio.run(_kafka())),
    "neo4j": (f"Neo4j at {NEO4J_URI}", _neo4j),
    "redis": (f"Redis at {REDIS_URL}", _redis),
}


def require(*services: str) -> None:
    """Fail the calling test unless every named service (kafka, neo4j, redis) answers."""
    down = []
    for name in services:
        what, check = _CHECKS[name]
        try:
            check()
        except Exception as exc:  # any failure to answer is a missing service
            down.append(f"{what} ({exc!r})")
    if down:
        pytest.fail(
            "integration services unreachable: " + "; ".join(down) + ". Start them with "
            f"`deploy/services.sh up {' '.join(services)}`.",
            pytrace=False,
        )


async def caught_up(group: str, prefix: str) -> bool:
    """Has the stream workers' consumer ``group`` committed every partition of every source
    topic of ``prefix`` up to its end offset?"""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await consumer.start()
    try:
        topics = list(source_topics(prefix).values())
        committed = await committed_offsets(admin, group, topics)
        parts = [TopicPartition(t, n) for t in topics for n in await topic_partitions(consumer, t)]
        ends = await consumer.end_offsets(parts)
        return all(committed.get(tp, 0) >= ends[tp] for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()
