"""Latency of one 2-hop temporal sample with fan-out (15, 10) (target p99 ≤ 2 ms, one core).

Builds the graph from a stream, then samples single payments from the last days at their own
event time (point in time, as the API does), several runs; reports p50/p95/p99 per run and the
median of each across runs, plus the subgraph sizes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from common import ensure_stream, machine, percentiles, table, write

from feature_stream.event_io import FileEventSource
from feature_stream.events import Payment, parse_event
from feature_stream.graph_memory import InMemoryGraphStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stream", help="stream directory (default: generate the default stream)")
    ap.add_argument("--fanouts", default="15,10")
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    fanouts = tuple(int(x) for x in args.fanouts.split(","))
    stream = ensure_stream(args.stream, Path("runs/bench/stream"))
    g = InMemoryGraphStore()
    payments: list[Payment] = []
    for r in FileEventSource(stream):
        e = parse_event(r.value)
        g.add(e)
        if isinstance(e, Payment):
            payments.append(e)
    pool = payments[len(payments) * 3 // 4 :]
    rng = random.Random(0)
    runs, sizes = [], []
    for _ in range(args.runs):
        lat = []
        for q in rng.sample(pool, min(args.queries, len(pool))):
            t0 = time.perf_counter()
            sg = g.sample([q], fanouts)[0]
            lat.append((time.perf_counter() - t0) * 1e3)
            sizes.append(sg.num_nodes)
        runs.append(percentiles(lat))
    med = {k: statistics.median(r[k] for r in runs) for k in ("p50", "p95", "p99")}
    res = {
        "fanouts": fanouts,
        "runs": runs,
        "median_of_runs_ms": med,
        "nodes_per_sample": percentiles([float(s) for s in sizes]),
        "target_p99_ms": 2.0,
        "graph": g.stats(),
        "machine": machine(),
    }
    rows = [("run", "p50 ms", "p95 ms", "p99 ms", "max ms")]
    rows += [
        (str(i), f"{r['p50']:.3f}", f"{r['p95']:.3f}", f"{r['p99']:.3f}", f"{r['max']:.3f}")
        for i, r in enumerate(runs)
    ]
    rows.append(("median", f"{med['p50']:.3f}", f"{med['p95']:.3f}", f"{med['p99']:.3f}", ""))
    print(table(rows))
    ns = res["nodes_per_sample"]
    print(f"nodes per sample: p50 {ns['p50']:.0f}, p99 {ns['p99']:.0f}, max {ns['max']:.0f}")
    write(args.out, res)


if __name__ == "__main__":
    main()
