"""End-to-end smoke test of the services started by deploy/services.sh.

    .venv/bin/python deploy/smoke.py [kafka] [neo4j] [redis] [opa]     (default: all four)

Kafka: produce one message to a fresh topic and consume it back (aiokafka), then delete the topic.
Neo4j: RETURN 1, MERGE a node by id, read it back, delete it (neo4j driver).
Redis: PING, SET/GET/DEL a key (redis-py).
OPA:   GET /health, upload a throwaway policy, query it with an input, delete it (stdlib HTTP).
Connection settings come from the same env vars as deploy/env.sh. A check whose client library is
not installed is reported as SKIP. Exit status 0 when nothing failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import urllib.request
import uuid

KAFKA = os.environ.get(
    "RISKGRAPH_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('RISKGRAPH_KAFKA_PORT', '9092')}"
)
NEO4J = os.environ.get(
    "RISKGRAPH_NEO4J_URI", f"bolt://127.0.0.1:{os.environ.get('RISKGRAPH_NEO4J_PORT', '7687')}"
)
REDIS = os.environ.get(
    "RISKGRAPH_REDIS_URL", f"redis://127.0.0.1:{os.environ.get('RISKGRAPH_REDIS_PORT', '6379')}/0"
)
OPA = os.environ.get(
    "RISKGRAPH_OPA_URL", f"http://127.0.0.1:{os.environ.get('RISKGRAPH_OPA_PORT', '8181')}"
)
RUN_ID = uuid.uuid4().hex[:12]


class Skip(Exception):
    pass


async def _kafka() -> str:
    try:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient
    except ImportError as exc:
        raise Skip(f"aiokafka not installed ({exc})") from exc
    topic = f"riskgraph-smoke-{RUN_ID}"
    payload = json.dumps({"run": RUN_ID}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    try:
        md = await producer.send_and_wait(topic, payload, key=b"acct-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=KAFKA,
        group_id=f"riskgraph-smoke-{RUN_ID}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
    finally:
        await consumer.stop()
    if msg.value != payload or msg.key != b"acct-1":
        raise RuntimeError(f"consumed {msg.key!r}:{msg.value!r}, expected acct-1:{payload!r}")
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    return f"produced+consumed 1 message on {topic} (partition {md.partition}, offset {md.offset})"


def check_kafka() -> str:
    return asyncio.run(_kafka())


def check_neo4j() -> str:
    try:
        from neo4j import GraphDatabase
    except ImportError as exc:
        raise Skip(f"neo4j driver not installed ({exc})") from exc
    with GraphDatabase.driver(NEO4J, auth=None) as drv:
        drv.verify_connectivity()
        one = drv.execute_query("RETURN 1 AS one").records[0]["one"]
        assert one == 1, one
        drv.execute_query("MERGE (a:SmokeAccount {id: $id}) SET a.created = timestamp()", id=RUN_ID)
        drv.execute_query("MERGE (a:SmokeAccount {id: $id})", id=RUN_ID)  # idempotent
        n = drv.execute_query(
            "MATCH (a:SmokeAccount {id: $id}) RETURN count(a) AS n", id=RUN_ID
        ).records[0]["n"]
        drv.execute_query("MATCH (a:SmokeAccount {id: $id}) DELETE a", id=RUN_ID)
        version = drv.get_server_info().agent
    if n != 1:
        raise RuntimeError(f"expected 1 node after two MERGEs, found {n}")
    return f"RETURN 1 ok; MERGE/read/delete node ok ({version})"


def check_redis() -> str:
    try:
        import redis
    except ImportError as exc:
        raise Skip(f"redis-py not installed ({exc})") from exc
    r = redis.Redis.from_url(REDIS)
    try:
        assert r.ping()
        key = f"riskgraph:smoke:{RUN_ID}"
        r.set(key, "ok", ex=60)
        got = r.get(key)
        r.delete(key)
        version = r.info("server")["redis_version"]
    finally:
        r.close()
    if got != b"ok":
        raise RuntimeError(f"GET returned {got!r}")
    return f"PING/SET/GET/DEL ok (redis {version})"


def _http(method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
    req = urllib.request.Request(OPA + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)


def check_opa() -> str:
    status, _ = _http("GET", "/health")
    if status != 200:
        raise RuntimeError(f"/health answered {status}")
    pkg = f"riskgraph_smoke_{RUN_ID}"
    rego = f"package {pkg}\n\ndefault allow := false\n\nallow if input.amount < 100\n"
    _http("PUT", f"/v1/policies/{pkg}", rego.encode(), "text/plain")
    try:
        _, low = _http(
            "POST", f"/v1/data/{pkg}/allow", json.dumps({"input": {"amount": 5}}).encode()
        )
        _, high = _http(
            "POST", f"/v1/data/{pkg}/allow", json.dumps({"input": {"amount": 500}}).encode()
        )
    finally:
        _http("DELETE", f"/v1/policies/{pkg}")
    if low.get("result") is not True or high.get("result") is not False:
        raise RuntimeError(f"unexpected decisions {low} / {high}")
    _, pol = _http("GET", "/v1/policies")
    n_loaded = len(pol["result"])
    return f"/health 200; query allow(5)=true allow(500)=false; {n_loaded} policy module(s) loaded"


CHECKS = {"kafka": check_kafka, "neo4j": check_neo4j, "redis": check_redis, "opa": check_opa}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.ERROR)
    # aiokafka logs "topic not found" errors while the test topic is being auto-created.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    names = argv or list(CHECKS)
    failed = 0
    for name in names:
        if name not in CHECKS:
            print(f"unknown service {name!r}; expected {', '.join(CHECKS)}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        try:
            msg = CHECKS[name]()
            print(f"ok    {name:6} {msg} [{time.perf_counter() - t0:.2f}s]")
        except Skip as exc:
            print(f"SKIP  {name:6} {exc}")
        except Exception as exc:
            failed += 1
            print(f"FAIL  {name:6} {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
