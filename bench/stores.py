"""Micro-benchmarks of the service-mode stores against real Neo4j and Redis.

* Neo4j ingest: ``Neo4jGraphStore.add_many`` events/s over the first ``--events`` events of the
  stream, per batch size (target ≥ 5k events/s), each run into a fresh namespace;
* Neo4j sampling: one 2-hop (15, 10) sample of a payment at its own event time, p50/p99 (and a
  parity count: samples that differ from the in-memory store's, which must be 0);
* Redis features: ``compute_features`` of one payment (≈ 25 window queries, one round trip
  each), p50/p99;
* Redis add: observations/s when a worker adds each event's observations (one ``add`` per
  event, one pipelined round trip each) and when it adds them in batches of 500 events;
* the scoring replica's two sampling paths (:mod:`feature_stream.graph_window`): a (15, 10)
  sample of payments from the last quarter of the events, p50/p99, from the in-memory window
  (``--window-days`` of event time, fed the same events) and from Neo4j for the same queries,
  and through the windowed store as routed (window, or Neo4j fallback for a query with an
  entity the window has not seen), with the share that falls back.

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
from feature_stream.graph_window import IN_WINDOW, WindowedGraphStore, WindowGraph

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


def bench_window(
    uri: str, events: list[AnyEvent], window_days: float, runs: int, queries: int
) -> dict[str, Any]:
    """The window and the Neo4j fallback of a scoring replica, on the same events."""
    durable = Neo4jGraphStore(uri, namespace=f"bench-{uuid.uuid4().hex[:10]}", batch_size=2000)
    try:
        durable.add_many(events)
        window = WindowGraph(window_days * 86400.0)
        for e in events:  # as the changelog would
            window.add(e)
        store = WindowedGraphStore(window, durable)
        payments = [e for e in events if isinstance(e, Payment)]
        pool = [p for p in payments[len(payments) * 3 // 4 :] if p.ts > window.horizon]
        routes = {q.event_id: store.route(q, window.horizon) for q in pool}
        near = [q for q in pool if routes[q.event_id] == IN_WINDOW]
        rng = random.Random(0)
        warm = rng.sample(pool, min(20, len(pool)))
        store.sample(warm, (15, 10))  # plans compiled, JIT warm
        durable.sample(warm, (15, 10))

        def timed(sample: Any, qs: list[Payment]) -> list[float]:
            lat = []
            for q in qs:
                t0 = time.perf_counter()
                sample([q], (15, 10))
                lat.append((time.perf_counter() - t0) * 1e3)
            return lat

        per_run: dict[str, list[dict[str, float]]] = {
            "window": [],
            "neo4j_same_queries": [],
            "routed_window": [],
            "routed_fallback": [],
        }
        for _ in range(runs):
            same = rng.sample(near, min(queries, len(near)))
            per_run["window"].append(percentiles(timed(window.sample, same)))
            per_run["neo4j_same_queries"].append(percentiles(timed(durable.sample, same)))
            mixed = rng.sample(pool, min(queries, len(pool)))
            for name, want in (("routed_window", True), ("routed_fallback", False)):
                qs = [q for q in mixed if (routes[q.event_id] == IN_WINDOW) == want]
                per_run[name].append(percentiles(timed(store.sample, qs)))
        out: dict[str, Any] = {
            name: {
                "runs": rs,
                "median_of_runs": {
                    k: statistics.median(r[k] for r in rs) for k in ("p50", "p95", "p99")
                },
            }
            for name, rs in per_run.items()
        }
        out["window_days"] = window_days
        out["queries_in_pool"] = len(pool)
        out["fallback_share"] = 1 - len(near) / len(pool)
        out["fallback_reasons"] = {
            r: sum(1 for x in routes.values() if x == r) for r in set(routes.values())
        }
        out["window_graph"] = window.stats()
        return out
    finally:
        durable.clear()
        durable.close()


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
    ap.add_argument(
        "--window-days", type=float, default=7.0, help="replica window (RISKGRAPH_WINDOW_DAYS)"
    )
    ap.add_argument(
        "--only", default="neo4j,redis,window", help="comma-separated parts to run (default: all)"
    )
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    stream = ensure_stream(args.stream, ROOT / "runs/bench/stream")
    events = [parse_event(r.value) for r in FileEventSource(stream)][: args.events]
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    res: dict[str, Any] = {"events": len(events)}
    if "neo4j" in parts:
        res["neo4j"] = bench_neo4j(args.neo4j, events, batch_sizes, args.runs, args.queries)
    if "redis" in parts:
        res["redis"] = bench_redis(args.redis, events, args.runs, args.queries)
    if "window" in parts:
        res["window"] = bench_window(args.neo4j, events, args.window_days, args.runs, args.queries)
    res |= {"load_average": os.getloadavg(), "machine": machine()}
    if "neo4j" in parts and "redis" in parts:
        print_stores(res)
    if "window" in parts:
        print_window(res["window"])
    print(f"load average {res['load_average'][0]:.1f} on {machine()['cpu_count']} CPUs")
    write(args.out, res)


def print_window(w: dict[str, Any]) -> None:
    rows: list[tuple[str, ...]] = [("(15,10) sample, ms", "p50", "p95", "p99")]
    for label, key in (
        ("window (in-memory)", "window"),
        ("neo4j, same queries", "neo4j_same_queries"),
        ("windowed store, routed to window", "routed_window"),
        ("windowed store, neo4j fallback", "routed_fallback"),
    ):
        m = w[key]["median_of_runs"]
        rows.append((label, f"{m['p50']:.2f}", f"{m['p95']:.2f}", f"{m['p99']:.2f}"))
    print(table(rows))
    print(
        f"window {w['window_days']:g} days; {w['fallback_share']:.1%} of "
        f"{w['queries_in_pool']} queries fall back to Neo4j ({w['fallback_reasons']})"
    )


def print_stores(res: dict[str, Any]) -> None:
    neo, red, events = res["neo4j"], res["redis"], res["events"]
    rows: list[tuple[str, ...]] = [("measure", "median", "min", "max", "target")]
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
        f"{events} events; sample parity with the in-memory store: "
        f"{s['parity_checked'] - s['parity_mismatches']}/{s['parity_checked']} identical; "
        f"nodes per sample p50 {s['nodes_per_sample']['p50']:.0f}"
    )


if __name__ == "__main__":
    main()
