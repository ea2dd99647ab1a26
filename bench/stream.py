"""Stream worker throughput (Kafka → Neo4j) and changelog lag (Kafka → replica window).

Needs Kafka and Neo4j (and Redis with ``--features redis``): ``deploy/services.sh up``.

* **ingest**: the whole stream is produced first; then a worker (Neo4j graph store, feature store
  per ``--features``) drains it. events/s = records committed after the first batch's commit /
  (last commit − first commit). Target: ≥ 5k events/s.
* **lag**: a producer publishes at ``--rate`` events/s while the worker and a changelog follower
  (in-memory window) run, each in its own process as deployed; lag = source record produce
  time → applied in the window (ms). Target p99 ≤ 250 ms.

Each run uses fresh topics and a fresh Neo4j namespace; medians over runs. The namespaces are
deleted when the benchmark ends (``--delete-between-runs`` deletes each right after its run, as
before session 9): Neo4j reuses the IDs of deleted records, so a run right after a delete
writes into the holes it left, which a sustained ingest without deletes does not.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from common import host_probe, machine, percentiles, service_cpu_s, table, write

from feature_stream.changelog import ChangelogFollower
from feature_stream.event_io import FileEventSource
from feature_stream.kafka_io import KafkaEventSink, all_topics, produce_stream
from feature_stream.stream_app import StreamConfig, build_stores, make_app

BOOTSTRAP = os.environ.get("RISKGRAPH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def _stream(accounts: int, days: int) -> Path:
    from feature_stream.generator import GeneratorConfig, generate

    path = Path(f"runs/bench/stream-{accounts}x{days}")
    if not (path / "manifest.json").exists():
        # Fraud scenarios scaled to the population (the defaults need ~2000 accounts).
        scale = min(1.0, accounts / 4000)
        knobs = {
            k: max(1, round(v * scale))
            for k, v in GeneratorConfig().model_dump().items()
            if k
            in (
                "rings",
                "takeover_waves",
                "card_testing_bursts",
                "mule_chains",
                "device_farm_episodes",
                "bust_out_merchants",
            )
        }
        cfg = GeneratorConfig(n_accounts=accounts, n_merchants=max(50, accounts // 5), days=days)
        generate(cfg.model_copy(update=knobs), path, progress=False)
    return path


def _config(args: argparse.Namespace, tag: str) -> StreamConfig:
    run = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    return StreamConfig(
        kafka_bootstrap=BOOTSTRAP,
        topic_prefix=run + "-",
        namespace=run,
        graph_backend="neo4j",
        feature_backend=args.features,
        batch_max=args.batch,
        neo4j_uri=os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687"),
        redis_url=os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )


def _drop_topics(cfg: StreamConfig) -> None:
    """Delete the run's topics: left behind, every run adds seven topics and its records to
    the broker that the next runs share the machine with."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def drop() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            await admin.delete_topics([t for t in all_topics(cfg.topic_prefix) if t in existing])
        finally:
            await admin.close()

    asyncio.run(drop())


_LEFT: list[str] = []  # namespaces to delete at the end (see the module docs)


def _done_with(args: argparse.Namespace, cfg: StreamConfig, graph: Any) -> None:
    if args.delete_between_runs:
        graph.clear()
    else:
        _LEFT.append(cfg.namespace)


def _delete_left(cfg: StreamConfig) -> None:
    from neo4j import GraphDatabase

    from feature_stream.graph_neo4j import delete_namespace

    with GraphDatabase.driver(cfg.neo4j_uri, auth=cfg.neo4j_auth) as driver:
        for ns in _LEFT:
            delete_namespace(driver, ns)
    _LEFT.clear()


def _produce(cfg: StreamConfig, stream: Path, rate: float | None) -> None:
    sink = KafkaEventSink(BOOTSTRAP, prefix=cfg.topic_prefix)
    try:
        produce_stream(stream, sink, rate=rate, progress=False)
    finally:
        sink.close()


def _cpu() -> dict[str, float | None]:
    """CPU seconds so far of this process (the worker) and of the Neo4j and Kafka servers."""
    return {
        "worker": time.process_time(),
        "neo4j": service_cpu_s("neo4j"),
        "kafka": service_cpu_s("kafka"),
    }


def ingest_run(args: argparse.Namespace, stream: Path, total: int) -> dict[str, float]:
    cfg = _config(args, "ingest")
    _produce(cfg, stream, None)
    graph, features = build_stores(cfg)
    worker = make_app(cfg, graph, features)
    probe = host_probe()

    async def run() -> dict[str, float]:
        task = asyncio.create_task(worker.run())
        first, first_n = None, 0
        while worker.processed < total:
            if first is None and worker.processed > 0:
                first, first_n = time.perf_counter(), worker.processed
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        end = time.perf_counter()
        worker.stop()
        await task
        # The clock starts at the first commit, so the records of that batch are not counted:
        # counting them (before session 10) overstated the rate by total / (total - batch),
        # 4 % at batch 2,000 and 10 % at 5,000 on the default stream.
        secs = end - (first or end)
        if first_n >= total or secs <= 0:
            raise SystemExit("the stream fits in one worker batch: use a smaller --batch")
        return {
            "events": total,
            "timed_events": total - first_n,
            "seconds": secs,
            "events_per_s": (total - first_n) / secs,
        }

    try:
        before = _cpu()
        out = asyncio.run(run())
        after = _cpu()
        # CPU per event of each process over the drain: a slow run with the same CPU per
        # event was starved (host, neighbours); one with more did more work (GC, checkpoints).
        for name, t0 in before.items():
            t1 = after[name]
            if t0 is not None and t1 is not None:
                out[f"{name}_cpu_us_per_event"] = (t1 - t0) / total * 1e6
        out["host_probe_ms"] = probe
        return out
    finally:
        _done_with(args, cfg, graph)
        graph.close()
        features.close()
        _drop_topics(cfg)


def _follow(prefix: str, ready: Any, stop: Any, out: Any) -> None:
    """A scoring replica's changelog follower, in its own process (as deployed): tails the
    changelog into an in-memory window until ``stop``, then sends its lag samples."""

    async def run() -> list[float]:
        follower = ChangelogFollower(BOOTSTRAP, prefix)
        await follower.start()
        ready.set()
        while not stop.is_set():
            await follower.poll(timeout_ms=20)
        await follower.catch_up()
        await follower.close()
        return list(follower.lags_ms)

    out.put(asyncio.run(run()))


def lag_run(args: argparse.Namespace, stream: Path, total: int) -> dict[str, Any]:
    """Worker here; the producer (a payment system) and the follower (a scoring replica) in
    processes of their own, as deployed, so neither takes the worker's interpreter lock."""
    cfg = _config(args, "lag")
    graph, features = build_stores(cfg)
    worker = make_app(cfg, graph, features)
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()

    async def run() -> list[float]:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(2.0)  # joined the group and created the topics
        follower = ctx.Process(target=_follow, args=(cfg.topic_prefix, ready, stop, out))
        follower.start()
        while not ready.is_set():
            await asyncio.sleep(0.05)
        producer = ctx.Process(target=_produce, args=(cfg, stream, args.rate))
        producer.start()
        while producer.is_alive() or worker.processed < total:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        stop.set()
        lags: list[float] = await asyncio.to_thread(out.get, True, 120)
        follower.join()
        worker.stop()
        await task
        return lags

    try:
        lags = asyncio.run(run())
    finally:
        _done_with(args, cfg, graph)
        graph.close()
        features.close()
        _drop_topics(cfg)
    return {"rate": args.rate, **percentiles(lags)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--features", choices=["memory", "redis"], default="memory")
    ap.add_argument(
        "--batch", type=int, default=StreamConfig().batch_max, help="worker batch (records)"
    )
    ap.add_argument("--rate", type=float, default=500.0, help="lag runs: produce rate, ev/s")
    ap.add_argument("--lag-accounts", type=int, default=300, help="lag runs: stream size")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--delete-between-runs",
        action="store_true",
        help="delete each run's Neo4j namespace right after it (default: all at the end)",
    )
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    stream = _stream(args.accounts, args.days)
    total = sum(1 for _ in FileEventSource(stream))
    try:
        ingest = [ingest_run(args, stream, total) for _ in range(args.runs)]
        lag_stream = _stream(args.lag_accounts, args.days)
        lag_total = sum(1 for _ in FileEventSource(lag_stream))
        lag = [lag_run(args, lag_stream, lag_total) for _ in range(args.runs)]
    finally:
        _delete_left(_config(args, "cleanup"))
    med_eps = statistics.median(r["events_per_s"] for r in ingest)
    med_lag = {k: statistics.median(r[k] for r in lag) for k in ("p50", "p95", "p99", "max")}

    def us(r: dict[str, float], name: str) -> str:
        v = r.get(f"{name}_cpu_us_per_event")
        return "-" if v is None else f"{v:.0f}"

    head = ("run", "ingest ev/s", "probe ms", "CPU us/ev: worker", "neo4j", "kafka")
    rows = [(*head, "lag p50 ms", "lag p99 ms", "lag max ms")]
    rows += [
        (
            str(i),
            f"{a['events_per_s']:.0f}",
            f"{a['host_probe_ms']:.0f}",
            us(a, "worker"),
            us(a, "neo4j"),
            us(a, "kafka"),
            f"{b['p50']:.1f}",
            f"{b['p99']:.1f}",
            f"{b['max']:.1f}",
        )
        for i, (a, b) in enumerate(zip(ingest, lag, strict=True))
    ]
    medians = (f"{med_lag['p50']:.1f}", f"{med_lag['p99']:.1f}", "")
    rows.append(("median", f"{med_eps:.0f}", "", "", "", "", *medians))
    print(table(rows))
    print(
        f"ingest: {total} records; lag: {lag_total} records produced at {args.rate:.0f} ev/s; "
        f"features={args.features}"
    )
    write(
        args.out,
        {
            "records": total,
            "lag_records": lag_total,
            "lag_rate": args.rate,
            "features": args.features,
            "batch_max": args.batch,
            "delete_between_runs": args.delete_between_runs,
            "ingest_runs": ingest,
            "lag_runs": lag,
            "median_ingest_events_per_s": med_eps,
            "median_lag_ms": med_lag,
            "targets": {"ingest_events_per_s": 5000, "lag_p99_ms": 250},
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
