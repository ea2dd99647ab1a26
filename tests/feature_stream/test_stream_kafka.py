"""Kafka → stream worker → Neo4j + Redis + changelog, against the real services.

Needs Kafka, Neo4j and Redis from ``deploy/services.sh up kafka neo4j redis`` (connection from
``deploy/env.sh``). Every test uses its own topic prefix, consumer group, Neo4j namespace and
Redis key prefix. The outage test stops and restarts Neo4j through ``deploy/services.sh``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from feature_stream.changelog import ChangelogFollower
from feature_stream.event_io import FileEventSource, InMemoryEventSink
from feature_stream.events import Payment, parse_event
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore
from feature_stream.features import compute_features
from feature_stream.generator import GeneratorConfig, generate
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import Ingestor
from feature_stream.kafka_io import (
    DEAD_LETTERS,
    KafkaEventSink,
    KafkaEventSource,
    produce_stream,
    source_topics,
    topic_partitions,
)
from feature_stream.stream_app import StreamConfig, make_app
from tests.services_up import caught_up, require

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
NEO4J_URI = os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687")
REDIS_URL = os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICES = ROOT / "deploy" / "services.sh"
CRASH_RUNS = 5


@pytest.fixture(scope="session", autouse=True)
def services() -> None:
    """Kafka, Neo4j and Redis must answer; a missing service fails the run, never skips it."""
    require("kafka", "neo4j", "redis")


@dataclass
class Reference:
    """The same stream ingested in-process: what every store must end up holding."""

    directory: Path
    records: int
    graph: InMemoryGraphStore
    features: InMemoryFeatureStore
    dead: Counter[tuple[str, str, str]]
    dead_total: int
    payments: list[Payment]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    directory = tmp_path_factory.mktemp("stream")
    cfg = GeneratorConfig(
        n_accounts=300,
        n_merchants=60,
        days=14,
        rings=1,
        takeover_waves=1,
        card_testing_bursts=2,
        mule_chains=1,
        device_farm_episodes=2,
        bust_out_merchants=1,
        invalid_rate=0.01,
    )
    generate(cfg, directory, progress=False)
    graph, features, dead = InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink()
    records = list(FileEventSource(directory))
    Ingestor(graph, features, dead).run(records)
    payments = [e for r in records if isinstance(e := _try_parse(r.value), Payment)]
    return Reference(
        directory=directory,
        records=len(records),
        graph=graph,
        features=features,
        dead=Counter(_dead_signature(d) for d in dead.records),
        dead_total=len(dead.records),
        payments=random.Random(0).sample(payments, 150),
    )


def _try_parse(value: Any) -> Any:
    try:
        return parse_event(value)
    except ValueError:
        return None


def _dead_signature(d: dict[str, Any]) -> tuple[str, str, str]:
    return (str(d["topic"]), str(d["field"]), str(d["reason"]))


def _unique(name: str) -> str:
    return f"t-{name}-{uuid.uuid4().hex[:8]}"


def _stores(namespace: str) -> tuple[GraphStore, FeatureStore]:
    from feature_stream.feature_redis import RedisFeatureStore
    from feature_stream.graph_neo4j import Neo4jGraphStore

    return (
        Neo4jGraphStore(NEO4J_URI, namespace=namespace),
        RedisFeatureStore(REDIS_URL, prefix=f"rg:{namespace}:"),
    )


def _drop(graph: Any, features: Any) -> None:
    """Delete the test's namespace from Neo4j and its keys from Redis, then disconnect."""
    try:
        graph.clear()
        features.clear()
    finally:
        graph.close()
        features.close()


def _assert_same_features(store: FeatureStore, ref: Reference) -> None:
    for p in ref.payments:
        got = compute_features(p, store).values
        assert got == pytest.approx(compute_features(p, ref.features).values), p.event_id


def _dead_letters(prefix: str) -> list[dict[str, Any]]:
    source = KafkaEventSource(BOOTSTRAP, [prefix + DEAD_LETTERS], idle_timeout_s=2.0)
    return [r.value for r in source]


def _produce(ref: Reference, prefix: str, rate: float | None = None) -> int:
    sink = KafkaEventSink(BOOTSTRAP, prefix=prefix)
    try:
        return produce_stream(ref.directory, sink, rate=rate, progress=False)
    finally:
        sink.close()


def _wait_caught_up(group: str, prefix: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not asyncio.run(caught_up(group, prefix)):
        assert time.monotonic() < deadline, f"group {group} did not catch up in {timeout_s}s"
        time.sleep(0.5)


class WorkerProcess:
    """``riskgraph stream`` in a subprocess (Neo4j + Redis), its output in a log file."""

    def __init__(
        self,
        prefix: str,
        namespace: str,
        log_path: Path,
        instance: str = "worker-1",
        partitions: int = 1,
    ) -> None:
        self.log_path = log_path
        env = os.environ | {
            "RISKGRAPH_KAFKA_BOOTSTRAP": BOOTSTRAP,
            "RISKGRAPH_NEO4J_URI": NEO4J_URI,
            "RISKGRAPH_REDIS_URL": REDIS_URL,
            "RISKGRAPH_SESSION_TIMEOUT_MS": "6000",
            "RISKGRAPH_RETRY_MAX_S": "1.0",
        }
        cmd = [sys.executable, "-m", "services.cli", "stream", "--topic-prefix", prefix]
        cmd += ["--graph", "neo4j", "--features", "redis", "--namespace", namespace]
        cmd += ["--instance-id", instance]  # static membership: a restart rejoins at once
        cmd += ["--partitions", str(partitions)]
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=self._log)
        self._wait_for("stream worker started", 60)

    def log(self) -> str:
        return self.log_path.read_text()

    def _wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.proc.poll() is None, f"worker exited early:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} in worker log:\n{self.log()[-3000:]}"
            time.sleep(0.1)

    def assigned(self) -> set[int]:
        """Partitions of the latest assignment the worker logged."""
        lines = [ln for ln in self.log().splitlines() if "partitions assigned" in ln]
        return {int(p) for p in re.findall(r"\[(\d+)\]", lines[-1])} if lines else set()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.kill()


def test_worker_fills_neo4j_redis_dead_letters_and_changelog(reference: Reference) -> None:
    prefix, namespace = _unique("e2e") + "-", _unique("e2e")
    assert _produce(reference, prefix) == reference.records
    cfg = StreamConfig(
        kafka_bootstrap=BOOTSTRAP,
        topic_prefix=prefix,
        namespace=namespace,
        graph_backend="neo4j",
        feature_backend="redis",
        neo4j_uri=NEO4J_URI,
        redis_url=REDIS_URL,
    )
    graph, features = _stores(namespace)
    worker = make_app(cfg, graph, features)

    async def run() -> ChangelogFollower:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 120
        while not await caught_up(cfg.group, prefix):
            assert not task.done(), task.result()
            assert time.monotonic() < deadline, "worker did not catch up"
            await asyncio.sleep(0.3)
        worker.stop()
        await task
        follower = ChangelogFollower(BOOTSTRAP, prefix)
        await follower.start()
        await follower.catch_up()
        await follower.close()
        return follower

    follower = asyncio.run(run())
    try:
        assert graph.stats() == reference.graph.stats()
        _assert_same_features(features, reference)
        assert worker.metrics.duplicates._value.get() == 0
    finally:
        _drop(graph, features)
    # The scoring replica's window holds exactly the same graph and features.
    assert follower.graph.stats() == reference.graph.stats()
    _assert_same_features(follower.features, reference)
    assert follower.applied == reference.records - reference.dead_total
    assert max(follower.lags_ms) > 0
    # Every malformed record is dead-lettered once, with the field at fault and the reason.
    dead = _dead_letters(prefix)
    assert len(dead) == reference.dead_total > 0
    assert Counter(_dead_signature(d) for d in dead) == reference.dead
    assert all(d["reason"] and d["value"] is not None for d in dead)


@pytest.mark.parametrize("run", range(CRASH_RUNS))
def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    run: int, reference: Reference, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    prefix, namespace = _unique(f"crash{run}") + "-", _unique(f"crash{run}")
    group = f"{prefix}riskgraph-stream"
    total_txns = reference.graph.stats()["transaction"]
    graph, features = _stores(namespace)
    try:
        workers.append(WorkerProcess(prefix, namespace, tmp_path / "worker.log"))
        producer = threading.Thread(target=_produce, args=(reference, prefix, 4000.0))
        producer.start()
        # Kill somewhere in the middle: after the first writes, at a different point per run.
        deadline = time.monotonic() + 30
        while graph.stats()["transaction"] == 0:
            assert time.monotonic() < deadline, workers[0].log()[-3000:]
            time.sleep(0.05)
        time.sleep(random.Random(run).uniform(0.0, 1.0))
        workers[0].kill()
        at_kill = graph.stats()["transaction"]
        assert 0 < at_kill < total_txns, f"kill was not mid-stream: {at_kill}/{total_txns}"
        producer.join()
        workers.append(WorkerProcess(prefix, namespace, tmp_path / "worker.log"))
        _wait_caught_up(group, prefix, 90)
        assert workers[1].terminate() == 0
        assert graph.stats() == reference.graph.stats()
        _assert_same_features(features, reference)
    finally:
        _drop(graph, features)
    # Dead letters are at-least-once: every malformed record is there, a replay may repeat some.
    dead = _dead_letters(prefix)
    assert set(Counter(_dead_signature(d) for d in dead)) == set(reference.dead)
    assert len({(d["topic"], d["offset"]) for d in dead}) == reference.dead_total


def _partition_counts(topics: list[str]) -> dict[str, int]:
    async def run() -> dict[str, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
        await consumer.start()
        try:
            return {t: len(await topic_partitions(consumer, t)) for t in topics}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_produce_creates_missing_topics_with_the_partitions_asked(reference: Reference) -> None:
    prefix = _unique("produce") + "-"
    cmd = [sys.executable, "-m", "services.cli", "produce", "--stream", str(reference.directory)]
    cmd += ["--max", "--quiet", "--partitions", "3"]
    # The prefix from the env file the worker shares, as `riskgraph stream` reads it.
    env = os.environ | {"RISKGRAPH_KAFKA_BOOTSTRAP": BOOTSTRAP, "RISKGRAPH_TOPIC_PREFIX": prefix}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {
        "sent": reference.records,
        "bootstrap": BOOTSTRAP,
        "topic_prefix": prefix,
    }
    topics = list(source_topics(prefix).values())
    assert _partition_counts(topics) == {t: 3 for t in topics}


def test_two_workers_split_the_partitions_and_write_every_event_once(
    reference: Reference, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """The scale-out path: one `riskgraph stream` process per partition of topics keyed by
    account, writing one namespace side by side (their transactions may deadlock on the nodes
    they share; the driver retries those)."""
    prefix, namespace = _unique("scale") + "-", _unique("scale")
    group = f"{prefix}riskgraph-stream"
    for i in (1, 2):
        log = tmp_path / f"worker{i}.log"
        workers.append(WorkerProcess(prefix, namespace, log, f"worker-{i}", partitions=2))
    # Until the second worker's join has moved a partition, the first may still hold both.
    deadline = time.monotonic() + 60
    while True:
        first, second = workers[0].assigned(), workers[1].assigned()
        if first and second and first.isdisjoint(second) and first | second == {0, 1}:
            break
        assert time.monotonic() < deadline, (first, second, workers[1].log()[-3000:])
        time.sleep(0.2)
    topics = list(source_topics(prefix).values())
    assert _partition_counts(topics) == {t: 2 for t in topics}
    _produce(reference, prefix)
    _wait_caught_up(group, prefix, 120)
    assert [w.terminate() for w in workers] == [0, 0]
    batches = [re.findall(r"stopped group=\S+ batches=(\d+)", w.log()) for w in workers]
    assert all(b and int(b[-1]) > 0 for b in batches), batches  # each wrote its share
    graph, features = _stores(namespace)
    try:
        assert graph.stats() == reference.graph.stats()
        _assert_same_features(features, reference)
    finally:
        _drop(graph, features)


def test_neo4j_outage_backs_off_then_catches_up(
    reference: Reference, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    prefix, namespace = _unique("outage") + "-", _unique("outage")
    group = f"{prefix}riskgraph-stream"
    workers.append(WorkerProcess(prefix, namespace, tmp_path / "worker.log"))
    try:
        subprocess.run(["bash", str(SERVICES), "down", "neo4j"], check=True, timeout=60)
        _produce(reference, prefix)
        # The Neo4j driver retries a transaction for up to 30 s itself before the worker's own
        # backoff sees the failure; wait for the worker's first logged retry.
        deadline = time.monotonic() + 90
        while "sink write failed, retrying" not in workers[0].log():
            assert workers[0].proc.poll() is None, workers[0].log()[-3000:]
            assert time.monotonic() < deadline, workers[0].log()[-3000:]
            time.sleep(0.2)
        assert not asyncio.run(caught_up(group, prefix))  # nothing committed past the stores
    finally:
        subprocess.run(["bash", str(SERVICES), "up", "neo4j"], check=True, timeout=180)
    _wait_caught_up(group, prefix, 120)
    assert "sinks recovered" in workers[0].log()
    assert workers[0].terminate() == 0
    graph, features = _stores(namespace)
    try:
        # Nothing lost, nothing doubled in the system of record. The backlog may release a
        # label before its payment; the label still counts once the payment arrives
        # (test_stream_app.py::test_a_label_before_its_payment_*), so features match too.
        assert graph.stats() == reference.graph.stats()
        _assert_same_features(features, reference)
    finally:
        _drop(graph, features)


def test_batched_sends_keep_send_partitioning_and_order() -> None:
    """``send_batched`` (the worker's changelog path) puts each record on the partition that
    ``producer.send`` picks for its key and keeps the order within a partition, also when the
    records overflow one produce batch (a 1 KiB batch size here) and for keyless records."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from feature_stream.kafka_io import ensure_topics, send_batched

    prefix = f"t-batched-{uuid.uuid4().hex[:8]}-"
    one, many = prefix + "send", prefix + "batched"
    rng = random.Random(3)
    keys = [f"acct-{rng.randrange(40)}".encode() for _ in range(300)]
    values = [f"value-{i}-{'x' * rng.randrange(5, 60)}".encode() for i in range(300)]

    async def read(topic: str, n: int) -> list[tuple[int, bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: list[tuple[int, bytes | None, bytes]] = []
        try:
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=2000)
                assert batch, f"{topic}: only {len(got)} records came back"
                for tp, msgs in sorted(batch.items(), key=lambda kv: kv[0].partition):
                    got += [(tp.partition, m.key, m.value) for m in msgs]  # type: ignore[misc]
        finally:
            await consumer.stop()
        return got

    async def run() -> tuple[list[Any], list[Any]]:
        await ensure_topics(BOOTSTRAP, [one, many], partitions=3)
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, max_batch_size=1024
        )
        await producer.start()
        try:
            for k, v in zip(keys, values, strict=True):
                await producer.send(one, v, key=k)
            records = [(many, k, v, [("h", b"1")]) for k, v in zip(keys, values, strict=True)]
            records += [(many, None, f"keyless-{i}".encode(), []) for i in range(5)]
            acks = await send_batched(producer, records)
            assert len(acks) > 3  # more than one batch per partition
            await asyncio.gather(*acks)
            await producer.flush()
        finally:
            await producer.stop()
        return await read(one, len(values)), await read(many, len(values) + 5)

    sent, batched = asyncio.run(run())
    keyed = [(p, k, v) for p, k, v in batched if k is not None]
    assert {k: p for p, k, _ in keyed} == {k: p for p, k, _ in sent}
    assert len({p for p, _, _ in keyed}) == 3
    for part in range(3):
        assert [v for p, _, v in keyed if p == part] == [v for p, _, v in sent if p == part]
    assert sorted(v for _, k, v in batched if k is None) == [
        f"keyless-{i}".encode() for i in range(5)
    ]
