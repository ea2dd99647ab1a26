"""Micro-benchmarks of the service-mode stores against real Neo4j and Redis.

* Neo4j ingest: ``Neo4jGraphStore.add_many`` events/s over the first ``--events`` events of the
  stream, per batch size (target ≥ 5k events/s), each run into a fresh namespace;
* Neo4j sampling: one 2-hop (15, 10) sample of a payment at its own event time, p50/p99 (and a
  parity count: samples that differ from the in-memory store's, which must be 0);
* Redis features: ``compute_features`` of one payment (≈ 25 window queries, one round trip
  each), p50/p99;
* Redis add: observations/s when a worker adds each event's observations (one ``add`` per
  event, one pipelined round trip each) and when it adds them in batches of 500 events.

Several runs each; the table shows the median of the runs. Start the servers first
(``deploy/services.sh up neo4j redis``, with ``RISKGRAPH_JVM_FAST_START=0`` for numbers); every
namespace or key prefix the script creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from typing import Any

from common import ROOT, ensure_stream, machine, percentiles, table, write

from feature_stream.event_io import FileEventSource
from feature_stream.events import Payment, parse_event
from feature_stream.feature_redis import RedisFeatureStore
from feature_stream.feature_store import Observation
from feature_stream.features import compute_features, observations_for
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_neo4j import Neo4jGraphStore

AnyEvent = Any


def spread(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}


def bench_neo4j(
    uri: str, events: list[AnyEvent], batch_sizes: list[int], runs: int, queries: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"ingest_events_per_s": {}}
    store: Neo4jGraphStore | None = None
    try:
        for bs in batch_sizes:
            rates = []
            for _ in range(runs):
                if store is not None:  # each run starts from an empty namespace
                    store.clear()
                    store.close()
                store = Neo4jGraphStore(
                    uri, namespace=f"bench-{uuid.uuid4().hex[:10]}", batch_size=bs
                )
                t0 = time.perf_counter()
                store.add_many(events)
                rates.append(len(events) / (time.perf_counter() - t0))
            out["ingest_events_per_s"][str(bs)] = spread(rates)
        assert store is not None  # the last run's graph is the one sampled below
        memory = InMemoryGraphStore()
        memory.add_many(events)
        payments = [e for e in events if isinstance(e, Payment)]
        pool = payments[len(payments) * 3 // 4 :]
        rng = random.Random(0)
        store.sample(rng.sample(pool, min(20, len(pool))), (15, 10))  # plans compiled, JIT warm
        sample_runs, sizes = [], []
        for _ in range(runs):
            lat = []
            for q in rng.sample(pool, min(queries, len(pool))):
                t0 = time.perf_counter()
                (g,) = store.sample([q], (15, 10))
                lat.append((time.perf_counter() - t0) * 1e3)
                sizes.append(float(g.num_nodes))
            sample_runs.append(percentiles(lat))
        check = rng.sample(pool, min(100, len(pool)))
        mismatches = sum(
            a != b
            for a, b in zip(
                store.sample(check, (15, 10)), memory.sample(check, (15, 10)), strict=True
            )
        )
        out["sample_15_10_ms"] = {
            "runs": sample_runs,
            "median_of_runs": {
                k: statistics.median(r[k] for r in sample_runs) for k in ("p50", "p95", "p99")
            },
            "nodes_per_sample": percentiles(sizes),
            "parity_mismatches": mismatches,
            "parity_checked": len(check),
        }
        out["graph"] = store.stats()
    finally:
        if store is not None:
            store.clear()
            store.close()
    return out


def bench_redis(url: str, events: list[AnyEvent], runs: int, queries: int) -> dict[str, Any]:
    graph = InMemoryGraphStore()
    per_event: list[list[Observation]] = []
    payments: list[Payment] = []
    for e in events:
        graph.add(e)
        per_event.append(observations_for(e, graph.transaction))
        if isinstance(e, Payment):
            payments.append(e)
    n_obs = sum(len(o) for o in per_event)
    root = f"rg:bench:{uuid.uuid4().hex[:10]}:"
    one_rates, batch_rates, feature_runs = [], [], []
    try:
        for run in range(runs):
            store = RedisFeatureStore(url, prefix=f"{root}{run}:")
            t0 = time.perf_counter()
            for obs in per_event:
                store.add(obs)
            one_rates.append(n_obs / (time.perf_counter() - t0))
            batched = RedisFeatureStore(url, prefix=f"{root}{run}b:")
            t0 = time.perf_counter()
            for i in range(0, len(per_event), 500):
                batched.add([o for obs in per_event[i : i + 500] for o in obs])
            batch_rates.append(n_obs / (time.perf_counter() - t0))
            batched.close()
            pool = payments[len(payments) * 3 // 4 :]
            for p in pool[:20]:  # scripts cached, connections open
                compute_features(p, store)
            lat = []
            for p in random.Random(run).sample(pool, min(queries, len(pool))):
                t0 = time.perf_counter()
                compute_features(p, store)
                lat.append((time.perf_counter() - t0) * 1e3)
            feature_runs.append(percentiles(lat))
            store.close()
    finally:
        cleaner = RedisFeatureStore(url, prefix=root)
        cleaner.clear()
        cleaner.close()
    return {
        "observations": n_obs,
        "add_obs_per_s_one_event_per_call": spread(one_rates),
        "add_obs_per_s_500_events_per_call": spread(batch_rates),
        "features_ms": {
            "runs": feature_runs,
            "median_of_runs": {
                k: statistics.median(r[k] for r in feature_runs) for k in ("p50", "p95", "p99")
            },
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stream", help="stream directory (default: generate the default stream)")
    ap.add_argument("--events", type=int, default=60_000, help="first N events of the stream")
    ap.add_argument("--batch-sizes", default="500,2000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300, help="samples / feature vectors per run")
    ap.add_argument(
        "--neo4j", default=os.environ.get("RISKGRAPH_NEO4J_URI", "bolt://127.0.0.1:7687")
    )
    ap.add_argument(
        "--redis", default=os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    stream = ensure_stream(args.stream, ROOT / "runs/bench/stream")
    events = [parse_event(r.value) for r in FileEventSource(stream)][: args.events]
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    neo = bench_neo4j(args.neo4j, events, batch_sizes, args.runs, args.queries)
    red = bench_redis(args.redis, events, args.runs, args.queries)
    res = {
        "events": len(events),
        "neo4j": neo,
        "redis": red,
        "load_average": os.getloadavg(),
        "machine": machine(),
    }
    rows = [("measure", "median", "min", "max", "target")]
    for bs, r in neo["ingest_events_per_s"].items():
        rows.append(
            (
                f"neo4j ingest, batch {bs} (events/s)",
                f"{r['median']:.0f}",
                f"{r['min']:.0f}",
                f"{r['max']:.0f}",
                "≥ 5000",
            )
        )
    for name, key in (("neo4j sample (15,10)", "sample_15_10_ms"), ("redis features", None)):
        m = (neo[key] if key else red["features_ms"])["median_of_runs"]
        rows.append((f"{name} p50 (ms)", f"{m['p50']:.2f}", "", "", ""))
        rows.append((f"{name} p99 (ms)", f"{m['p99']:.2f}", "", "", ""))
    for label, key in (
        ("redis add, 1 event/call (obs/s)", "add_obs_per_s_one_event_per_call"),
        ("redis add, 500 events/call (obs/s)", "add_obs_per_s_500_events_per_call"),
    ):
        r = red[key]
        rows.append((label, f"{r['median']:.0f}", f"{r['min']:.0f}", f"{r['max']:.0f}", ""))
    print(table(rows))
    s = neo["sample_15_10_ms"]
    print(
        f"{len(events)} events; sample parity with the in-memory store: "
        f"{s['parity_checked'] - s['parity_mismatches']}/{s['parity_checked']} identical; "
        f"nodes per sample p50 {s['nodes_per_sample']['p50']:.0f}; "
        f"load average {res['load_average'][0]:.1f} on {machine()['cpu_count']} CPUs"
    )
    write(args.out, res)


if __name__ == "__main__":
    main()
