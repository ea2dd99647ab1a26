"""Stream worker throughput (Kafka → Neo4j) and changelog lag (Kafka → replica window).

Needs Kafka and Neo4j (and Redis with ``--features redis``): ``deploy/services.sh up``.

* **ingest**: the whole stream is produced first, into topics of ``W`` partitions; then ``W``
  workers (``--workers``, each a process of its own as deployed, one consumer group; Neo4j
  graph store, feature store per ``--features``) drain it. The clock starts at the first
  commit seen once all ``W`` workers are in the group and hold their partitions; events/s =
  records committed after that / (last commit − that commit), from the group's committed
  offsets. ``--warmup-runs`` (default 1) unrecorded runs come first: Neo4j's JIT compiler
  makes the first ~100k events after a server start slower. Target: ≥ 5k events/s. Workers
  are the scale-out path: the topics are keyed by account, and each worker writes its
  partitions' events to Neo4j in transactions of its own.
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
import math
import multiprocessing as mp
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from common import host_probe, machine, percentiles, pid_cpu_s, service_cpu_s, table, write
from tqdm import tqdm

from feature_stream.changelog import ChangelogFollower
from feature_stream.event_io import FileEventSource
from feature_stream.kafka_io import (
    KafkaEventSink,
    all_topics,
    committed_offsets,
    ensure_topics,
    produce_stream,
    source_topics,
)
from feature_stream.stream_app import StreamConfig, build_stores, make_app, run_worker

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


def _config(args: argparse.Namespace, tag: str, partitions: int = 1) -> StreamConfig:
    run = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    return StreamConfig(
        partitions=partitions,
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


def _done_with(args: argparse.Namespace, cfg: StreamConfig) -> None:
    _LEFT.append(cfg.namespace)
    if args.delete_between_runs:
        _delete_left(cfg)


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


def _cpu(pids: list[int]) -> dict[str, float | None]:
    """CPU seconds so far of the workers and of the Neo4j and Kafka servers."""
    workers = [pid_cpu_s(p) for p in pids]
    return {
        "worker": None if None in workers else sum(w or 0.0 for w in workers),
        "neo4j": service_cpu_s("neo4j"),
        "kafka": service_cpu_s("kafka"),
    }


_INGEST_LIMIT_S = 600.0  # a run that takes longer has stalled


def ingest_run(
    args: argparse.Namespace, stream: Path, total: int, workers: int
) -> dict[str, float]:
    cfg = _config(args, "ingest", partitions=workers)
    asyncio.run(ensure_topics(BOOTSTRAP, all_topics(cfg.topic_prefix), workers))
    _produce(cfg, stream, None)
    probe = host_probe()
    # Each worker is `riskgraph stream` in a process of its own; SIGTERM stops it as deployed.
    procs = [
        mp.get_context("spawn").Process(target=run_worker, args=(cfg,)) for _ in range(workers)
    ]
    topics = set(source_topics(cfg.topic_prefix).values())

    async def run() -> dict[str, float]:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            t_start = time.perf_counter()
            for p in procs:
                p.start()
            pids = [p.pid for p in procs if p.pid is not None]
            first, first_n, before = None, 0, _cpu(pids)
            any_first, any_n = math.nan, 0  # session 10's clock: the first commit of anyone
            stable_after = math.nan
            deadline = time.perf_counter() + _INGEST_LIMIT_S
            while (
                done := sum((await committed_offsets(admin, cfg.group, topics)).values())
            ) < total:
                if done > 0 and not any_n:
                    any_first, any_n = time.perf_counter(), done
                if first is None and done > 0 and await _group_of(admin, cfg.group, workers):
                    # The clock (and CPU) from the first commit of the whole group on, like the
                    # rate: not the workers' start-up, nor their joining one by one.
                    first, first_n, before = time.perf_counter(), done, _cpu(pids)
                    stable_after = first - t_start
                if not all(p.is_alive() for p in procs):
                    raise RuntimeError("a stream worker died; see its output above")
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"ingest not done in {_INGEST_LIMIT_S:.0f} s: {done}/{total}"
                    )
                await asyncio.sleep(0.02)
            end, after = time.perf_counter(), _cpu(pids)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            await admin.close()
        secs = end - (first or end)
        if first_n >= total or secs <= 0:
            raise SystemExit("the stream fits in one worker batch: use a smaller --batch")
        # The clock starts at a commit, so the records committed by then are not counted:
        # counting the first batch (before session 10) overstated the rate by total / (total -
        # batch), 4 % at batch 2,000 and 10 % at 5,000 on the default stream. Since session 11
        # it starts once every worker holds its partitions (before, the first worker's solo
        # start and the rebalance when the next one joined were timed too).
        out = {
            "workers": workers,
            "events": total,
            "timed_events": total - first_n,
            "clock_started_s": stable_after,
            # As measured before session 11, from the first commit of any worker.
            "events_per_s_from_first_commit": (total - any_n) / (end - any_first),
            "seconds": secs,
            "events_per_s": (total - first_n) / secs,
        }
        # CPU per event of each process over the timed part: a slow run with the same CPU per
        # event was starved (host, neighbours); one with more did more work (GC, checkpoints).
        for name, t0 in before.items():
            t1 = after[name]
            if t0 is not None and t1 is not None:
                out[f"{name}_cpu_us_per_event"] = (t1 - t0) / (total - first_n) * 1e6
        out["host_probe_ms"] = probe
        return out

    try:
        return asyncio.run(run())
    finally:
        for p in procs:
            if p.pid is None:
                continue  # never started
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        _done_with(args, cfg)
        _drop_topics(cfg)


async def _group_of(admin: AIOKafkaAdminClient, group: str, members: int) -> bool:
    """Is consumer ``group`` stable with ``members`` members (every partition assigned)?"""
    (resp,) = await admin.describe_consumer_groups([group])
    _, _, state, _, _, joined, *_ = resp.groups[0]
    return bool(state == "Stable" and len(joined) == members)


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
        _done_with(args, cfg)
        graph.close()
        features.close()
        _drop_topics(cfg)
    return {"rate": args.rate, **percentiles(lags)}


def _workers(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",")]
    if min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts are integers >= 1, e.g. 1,2")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--features", choices=["memory", "redis"], default="memory")
    ap.add_argument(
        "--batch", type=int, default=StreamConfig().batch_max, help="worker batch (records)"
    )
    ap.add_argument(
        "--workers",
        type=_workers,
        default=[1, 2],
        help="ingest: worker processes (= partitions), a comma-separated list measured in "
        "turn (default: 1,2)",
    )
    ap.add_argument("--rate", type=float, default=500.0, help="lag runs: produce rate, ev/s")
    ap.add_argument("--lag-accounts", type=int, default=300, help="lag runs: stream size")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--warmup-runs",
        type=int,
        default=1,
        help="ingest runs with the most workers before the measured ones, not recorded: "
        "Neo4j's JIT compiler is still at work on the first ~100k events after a start",
    )
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
        for _ in tqdm(range(args.warmup_runs), desc="warm-up runs", unit="run"):
            ingest_run(args, stream, total, max(args.workers))
        ingest = [
            ingest_run(args, stream, total, w)
            for _ in tqdm(range(args.runs), desc="ingest runs", unit="run")
            for w in args.workers
        ]
        lag_stream = _stream(args.lag_accounts, args.days)
        lag_total = sum(1 for _ in FileEventSource(lag_stream))
        lag = [
            lag_run(args, lag_stream, lag_total)
            for _ in tqdm(range(args.runs), desc="lag runs", unit="run")
        ]
    finally:
        _delete_left(_config(args, "cleanup"))
    med_eps = {
        w: statistics.median(r["events_per_s"] for r in ingest if r["workers"] == w)
        for w in args.workers
    }
    med_lag = {k: statistics.median(r[k] for r in lag) for k in ("p50", "p95", "p99", "max")}

    def us(r: dict[str, float], name: str) -> str:
        v = r.get(f"{name}_cpu_us_per_event")
        return "-" if v is None else f"{v:.0f}"

    rows = [
        (
            "run",
            "workers",
            "ingest ev/s",
            "from 1st commit",
            "clock from s",
            "probe ms",
            "CPU us/ev: workers",
            "neo4j",
            "kafka",
        )
    ]
    rows += [
        (
            str(i // len(args.workers)),
            str(a["workers"]),
            f"{a['events_per_s']:.0f}",
            f"{a['events_per_s_from_first_commit']:.0f}",
            f"{a['clock_started_s']:.1f}",
            f"{a['host_probe_ms']:.0f}",
            us(a, "worker"),
            us(a, "neo4j"),
            us(a, "kafka"),
        )
        for i, a in enumerate(ingest)
    ]
    rows += [("median", str(w), f"{eps:.0f}", "", "", "", "", "", "") for w, eps in med_eps.items()]
    print(table(rows))
    lag_rows = [("run", "lag p50 ms", "lag p95 ms", "lag p99 ms", "lag max ms")]
    lag_rows += [
        (str(i), *(f"{b[k]:.1f}" for k in ("p50", "p95", "p99", "max"))) for i, b in enumerate(lag)
    ]
    lag_rows.append(("median", *(f"{med_lag[k]:.1f}" for k in ("p50", "p95", "p99", "max"))))
    print(table(lag_rows))
    print(
        f"ingest: {total} records; lag: {lag_total} records produced at {args.rate:.0f} ev/s "
        f"by one worker; features={args.features}"
    )
    write(
        args.out,
        {
            "records": total,
            "lag_records": lag_total,
            "lag_rate": args.rate,
            "features": args.features,
            "batch_max": args.batch,
            "workers": args.workers,
            "delete_between_runs": args.delete_between_runs,
            "warmup_runs": args.warmup_runs,
            "ingest_runs": ingest,
            "lag_runs": lag,
            "median_ingest_events_per_s": {str(w): v for w, v in med_eps.items()},
            "median_lag_ms": med_lag,
            "targets": {"ingest_events_per_s": 5000, "lag_p99_ms": 250},
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
